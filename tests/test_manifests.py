"""One manifest model for every openenv.yaml: upstream OpenEnv's (spec_version 1, keys kept)
and ours (models, client, dependencies); every gym_openenv server folder agrees with its
manifest, its models and the registry; bad fields are named."""

from pathlib import Path

import pytest
import yaml

from gym_openenv.manifest import DEFAULT_APP, Manifest, ManifestError, import_object, load_manifest
from gym_openenv.registry import REGISTRY_PATH, load_registry

ROOT = Path(__file__).resolve().parent.parent
SERVER_FOLDERS = sorted(p.parent for p in (ROOT / "gym_openenv" / "servers").glob("*/openenv.yaml"))
ECHO = ROOT / "gym_openenv" / "servers" / "echo" / "openenv.yaml"


def test_every_server_folder_has_a_manifest():
    folders = sorted(
        p for p in (ROOT / "gym_openenv" / "servers").iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "__pycache__"
    )
    assert [f.name for f in folders] == [f.name for f in SERVER_FOLDERS]


@pytest.mark.parametrize("folder", SERVER_FOLDERS, ids=lambda p: p.name)
def test_manifest_is_valid_and_agrees_with_its_folder(folder):
    manifest = load_manifest(folder)
    assert manifest.name == folder.name and manifest.description and manifest.version
    assert manifest.dockerfile_in(folder).is_file()
    package = f"gym_openenv.servers.{folder.name}."
    for path in (manifest.app, manifest.client.module):
        assert path.startswith(package), f"{path} is outside {package}"
    for path in (manifest.models.action, manifest.models.observation, manifest.models.state):
        # a folder's own models, or shared ones (MCP tool calls) from gym_openenv.server
        assert path.startswith((package, "gym_openenv.server.")), f"{path} is outside {package}"
    client = import_object(manifest.client.import_path)
    assert [client.action_type, client.observation_type, client.state_type] == [
        import_object(getattr(manifest.models, kind)) for kind in ("action", "observation", "state")
    ]


def test_every_server_is_registered():
    registered = {e.server for e in load_registry(REGISTRY_PATH)}
    missing = [f.name for f in SERVER_FOLDERS if f not in registered]
    assert not missing, f"server folders without a registry.yaml entry: {missing}"


@pytest.mark.parametrize("entry", load_registry(REGISTRY_PATH), ids=lambda e: e.name)
def test_registry_entry_serves_the_manifest_models(entry):
    manifest = entry.manifest()
    assert manifest.name == entry.name and entry.description == manifest.description
    env_cls = import_object(entry.environment)
    for kind in ("action", "observation", "state"):
        assert getattr(env_cls, f"{kind}_type") is import_object(getattr(manifest.models, kind)), kind


def test_descriptions_live_only_in_openenv_yaml(tmp_path):
    registry = tmp_path / "registry.yaml"
    registry.write_text("environments:\n  - {name: echo, server: x, environment: 'a:B', description: twice}\n")
    with pytest.raises(ValueError, match="echo.description belongs in the server folder's openenv.yaml"):
        load_registry.__wrapped__(registry)


@pytest.mark.parametrize(
    "data",
    [
        {"spec_version": 1, "name": "grid_world", "type": "space", "runtime": "fastapi", "app": "server.app:app", "port": 8000},
        {"spec_version": 1, "name": "world_env", "type": "space", "runtime": "fastapi", "app": "envs.world_env.server.app:app", "port": 8000},
        # OpenEnv's older shape: no spec_version, model class names at the top level.
        {"name": "julia_env", "version": "0.1.0", "description": "Julia code execution", "action": "JuliaAction", "observation": "JuliaObservation"},
    ],
    ids=["spec1", "spec1-dotted-app", "older"],
)
def test_reads_upstream_manifests(tmp_path, data):
    manifest = load_manifest(_write(tmp_path, data))
    assert manifest.name == data["name"] and manifest.spec_version == 1
    assert manifest.app == data.get("app", DEFAULT_APP) and manifest.port == data.get("port", 8000)
    assert set(manifest.model_extra) == set(data) - set(Manifest.model_fields)  # keys we do not know are kept


def test_upstream_shape_with_unknown_keys_kept(tmp_path):
    manifest = load_manifest(
        _write(tmp_path, {"spec_version": 1, "name": "maze_env", "type": "space", "runtime": "fastapi", "app": "server.app:app", "port": 8004, "tags": ["rl"]})
    )
    assert (manifest.name, manifest.type, manifest.port, manifest.models, manifest.client) == ("maze_env", "space", 8004, None, None)
    assert manifest.model_extra == {"tags": ["rl"]}
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert manifest.dockerfile_in(tmp_path) == tmp_path / "Dockerfile"  # OpenEnv's second place
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "Dockerfile").write_text("FROM scratch\n")
    assert manifest.dockerfile_in(tmp_path) == tmp_path / "server" / "Dockerfile"


def test_older_server_section_reads_as_port_and_dockerfile():
    manifest = Manifest.model_validate({"name": "echo", "server": {"port": 9000, "dockerfile": "docker/Dockerfile"}})
    assert (manifest.port, manifest.dockerfile) == (9000, "docker/Dockerfile")
    with pytest.raises(ValueError, match="only port and dockerfile"):
        Manifest.model_validate({"name": "echo", "server": {"workers": 2}})


def _echo_data() -> dict:
    return yaml.safe_load(ECHO.read_text())


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "openenv.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "change, field, message",
    [
        (lambda d: d.pop("name"), "name", "Field required"),
        (lambda d: d.update(spec_version=2), "spec_version", "1"),
        (lambda d: d.update(name="Echo Env"), "name", "pattern"),
        (lambda d: d.update(version="one"), "version", "must be a version"),
        (lambda d: d.update(runtime="flask"), "runtime", "fastapi"),
        (lambda d: d.update(app="gym_openenv.servers.echo.server.app"), "app", "'package.module:Name'"),
        (lambda d: d.update(port=70000), "port", "less than or equal to 65535"),
        (lambda d: d.update(description=""), "description", "at least 1 character"),
        (lambda d: d.update(client={"module": "gym_openenv.servers.echo.client", "class": "not a class"}), "client.class", "must be a class name"),
        (lambda d: d["models"].update(state="gym_openenv.servers.echo.models"), "models.state", "'package.module:Name'"),
        (lambda d: d["models"].update(reward="x:Y"), "models.reward", "Extra inputs are not permitted"),
        (lambda d: d.update(dependencies=["ale-py>=>0.10"]), "dependencies", "is not a pip requirement"),
    ],
)
def test_schema_names_the_offending_field(tmp_path, change, field, message):
    data = _echo_data()
    change(data)
    with pytest.raises(ManifestError) as error:
        load_manifest(_write(tmp_path, data))
    assert f"{field}: " in str(error.value) and message in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_unreadable_manifests(tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(ManifestError, match="expected a mapping"):
        load_manifest(_write(tmp_path, "- a list\n"))


def test_client_class_reads_from_the_class_key():
    manifest = Manifest.model_validate(_echo_data())
    assert manifest.client.import_path == "gym_openenv.servers.echo.client:EchoEnv"
    assert [str(r) for r in Manifest.model_validate({**_echo_data(), "dependencies": ["ale-py>=0.10"]}).requirements()] == ["ale-py>=0.10"]


def test_import_object_is_the_one_loader(tmp_path):
    assert import_object("gym_openenv.servers.echo.models:EchoAction").__name__ == "EchoAction"
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        import_object("gym_openenv.servers.echo.models:Nope")
    with pytest.raises(ValueError, match="expected 'module:Name'"):
        import_object("gym_openenv.servers.echo.models")
    # From a folder: its own top-level modules import, as OpenEnv's `uvicorn server.app:app` imports them.
    (tmp_path / "h6_folder_probe").mkdir()
    (tmp_path / "h6_folder_probe" / "h6_probe_models.py").write_text("VALUE = 42\n")
    assert import_object(f"h6_probe_models:VALUE@{tmp_path / 'h6_folder_probe'}") == 42
