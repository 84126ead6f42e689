"""Each server folder says what it serves once: its registry entry and its openenv.yaml.

The Dockerfile's CMD, the typed client's server and ``/metadata`` derive from
them instead of repeating the Environment class, the default arguments, the
name or the description.
"""

from __future__ import annotations

import json
import re

import pytest

from gym_openenv.registry import RegistryEntry, load_registry

ENTRIES = [e for e in load_registry() if e.server is not None]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_dockerfile_serves_the_registry_entry(entry: RegistryEntry) -> None:
    dockerfile = entry.manifest().dockerfile_in(entry.server).read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    assert json.loads(cmd) == entry.serve_command()
    # The default arguments are the registry entry's; the image does not repeat them.
    assert not re.search(r"^ENV OPENENV_ENV_KWARGS", dockerfile, flags=re.M)
    assert entry.environment not in dockerfile
