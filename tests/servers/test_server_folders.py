"""Each server folder says what it serves once: its registry entry and its openenv.yaml.

The Dockerfile's CMD, the typed client's server and ``/metadata`` derive from
them instead of repeating the Environment class, the default arguments, the
name or the description.
"""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from gym_openenv.manifest import import_object
from gym_openenv.registry import RegistryEntry, load_registry
from gym_openenv.server import create_app

ENTRIES = [e for e in load_registry() if e.server is not None]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_dockerfile_serves_the_registry_entry(entry: RegistryEntry) -> None:
    dockerfile = entry.manifest().dockerfile_in(entry.server).read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    assert json.loads(cmd) == entry.serve_command()
    # The default arguments are the registry entry's; the image does not repeat them.
    assert not re.search(r"^ENV OPENENV_ENV_KWARGS", dockerfile, flags=re.M)
    assert entry.environment not in dockerfile


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_metadata_comes_from_openenv_yaml(entry: RegistryEntry) -> None:
    # Through the server app, as GET /metadata answers (the environment made with its default arguments).
    manifest = entry.manifest()
    with TestClient(create_app(import_object(entry.environment), entry.kwargs)) as client:
        metadata = client.get("/metadata").json()
    assert (metadata["name"], metadata["description"], metadata["version"]) == (
        manifest.name,
        manifest.description,
        manifest.version,
    )


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_typed_client_launches_the_registry_entry(entry: RegistryEntry) -> None:
    client = import_object(entry.manifest().client.import_path)
    assert "environment" not in vars(client)  # not repeated in client.py: found from the client's folder
    assert client.served_environment() == entry.environment
