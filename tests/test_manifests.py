"""Every gym_openenv/servers/*/openenv.yaml follows the manifest schema and agrees with its
folder, its models and the registry; the schema rejects what it should, naming the field."""

from pathlib import Path

import pytest
import yaml

from gym_openenv.manifest import Manifest, ManifestError, import_object, load_manifest
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
    assert manifest.name == folder.name
    assert (folder / manifest.server.dockerfile).is_file()
    package = f"gym_openenv.servers.{folder.name}."
    for path in (manifest.app, manifest.client.module, manifest.models.action, manifest.models.observation, manifest.models.state):
        assert path.startswith(package), f"{path} is outside {package}"
    client = import_object(manifest.client.import_path)
    assert [client.action_type, client.observation_type, client.state_type] == [
        import_object(getattr(manifest.models, kind)) for kind in ("action", "observation", "state")
    ]


def test_every_server_is_registered():
    registered = {e.name for e in load_registry(REGISTRY_PATH)}
    missing = [f.name for f in SERVER_FOLDERS if f.name not in registered]
    assert not missing, f"server folders without a registry.yaml entry: {missing}"


@pytest.mark.parametrize(
    "entry", [e for e in load_registry(REGISTRY_PATH) if (REGISTRY_PATH.parent / e.server / "openenv.yaml").exists()], ids=lambda e: e.name
)
def test_registry_entry_serves_the_manifest_models(entry):
    folder = (REGISTRY_PATH.parent / entry.server).resolve()
    manifest = load_manifest(folder)
    assert manifest.name == entry.name
    env_cls = import_object(entry.environment)
    for kind in ("action", "observation", "state"):
        assert getattr(env_cls, f"{kind}_type") is import_object(getattr(manifest.models, kind)), kind


def _echo_data() -> dict:
    return yaml.safe_load(ECHO.read_text())


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "openenv.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "change, field, message",
    [
        (lambda d: d.pop("description"), "description", "Field required"),
        (lambda d: d.update(spec_version=2), "spec_version", "1"),
        (lambda d: d.update(name="Echo-Env"), "name", "pattern"),
        (lambda d: d.update(version="one"), "version", "must be a version"),
        (lambda d: d.update(runtime="flask"), "runtime", "fastapi"),
        (lambda d: d.update(app="gym_openenv.servers.echo.server.app"), "app", "'package.module:Name'"),
        (lambda d: d["server"].update(port=70000), "server.port", "less than or equal to 65535"),
        (lambda d: d["server"].pop("dockerfile"), "server.dockerfile", "Field required"),
        (lambda d: d["client"].update({"class": "not a class"}), "client.class", "must be a class name"),
        (lambda d: d["models"].update(state="gym_openenv.servers.echo.models"), "models.state", "'package.module:Name'"),
        (lambda d: d.update(dependencies=["ale-py>=>0.10"]), "dependencies", "is not a pip requirement"),
        (lambda d: d.update(port=8000), "port", "Extra inputs are not permitted"),
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
