"""``openenv.yaml``: the manifest of one server folder, validated.

Every ``gym_openenv/servers/<name>/`` folder describes itself in an ``openenv.yaml``::

    spec_version: 1
    name: echo
    version: 0.1.0
    description: Echoes each message back.
    runtime: fastapi
    app: gym_openenv.servers.echo.server.app:app
    server: {port: 8000, dockerfile: server/Dockerfile}
    client: {module: gym_openenv.servers.echo.client, class: EchoEnv}
    models:
      action: gym_openenv.servers.echo.models:EchoAction
      observation: gym_openenv.servers.echo.models:EchoObservation
      state: gym_openenv.servers.echo.models:EchoState
    dependencies: ["ale-py>=0.10"]   # pip requirement strings

Example:
    >>> m = load_manifest("gym_openenv/servers/echo")               # doctest: +SKIP
    >>> m.models.action                                 # doctest: +SKIP
    'gym_openenv.servers.echo.models:EchoAction'
"""

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["MANIFEST_FILE", "Manifest", "ManifestError", "import_object", "load_manifest"]

MANIFEST_FILE = "openenv.yaml"
_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^{_MODULE}:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODULE_PATH = re.compile(rf"^{_MODULE}$")


class ManifestError(ValueError):
    """An ``openenv.yaml`` that is missing, unreadable or does not follow the schema."""


def _import_path(value: str, field: str) -> str:
    if not _IMPORT_PATH.match(value):
        raise ValueError(f"{field} must be 'package.module:Name', got {value!r}")
    return value


class _Section(BaseModel):
    # Unknown keys are typos far more often than extensions: reject them.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerSection(_Section):
    port: int = Field(ge=1, le=65535, description="the port the server listens on in its container")
    dockerfile: str = Field(min_length=1, description="path of the Dockerfile, relative to the server folder")


class ClientSection(_Section):
    module: str = Field(description="module of the typed client")
    class_name: str = Field(alias="class", description="the EnvClient subclass in that module")

    @field_validator("module")
    @classmethod
    def _module(cls, value: str) -> str:
        if not _MODULE_PATH.match(value):
            raise ValueError(f"must be a dotted module path, got {value!r}")
        return value

    @field_validator("class_name")
    @classmethod
    def _class(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"must be a class name, got {value!r}")
        return value

    @property
    def import_path(self) -> str:
        return f"{self.module}:{self.class_name}"


class ModelsSection(_Section):
    action: str
    observation: str
    state: str

    @field_validator("action", "observation", "state")
    @classmethod
    def _path(cls, value: str, info: Any) -> str:
        return _import_path(value, f"models.{info.field_name}")


class Manifest(_Section):
    """The validated content of an ``openenv.yaml``."""

    spec_version: Literal[1]
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="lowercase letters, digits, underscores")
    version: str
    description: str = Field(min_length=1)
    runtime: Literal["fastapi"]
    app: str = Field(description="the ASGI app, 'module:attribute'")
    server: ServerSection
    client: ClientSection
    models: ModelsSection
    dependencies: list[str] = Field(default_factory=list, description="pip requirement strings")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"must be a version such as 0.1.0, got {value!r}") from None
        return value

    @field_validator("app")
    @classmethod
    def _app(cls, value: str) -> str:
        return _import_path(value, "app")

    @field_validator("dependencies")
    @classmethod
    def _requirements(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                Requirement(value)
            except InvalidRequirement as e:
                raise ValueError(f"{value!r} is not a pip requirement: {e}") from None
        return values

    def requirements(self) -> list[Requirement]:
        return [Requirement(d) for d in self.dependencies]


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``openenv.yaml`` (``path`` is the file or its server folder).

    Raises:
        ManifestError: naming the file and every offending field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path}: no such file (every server folder needs an {MANIFEST_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()
        )
        raise ManifestError(f"{path}: {problems}") from None


def import_object(path: str) -> Any:
    """``"package.module:Name"`` -> the object (``Name`` may be dotted)."""
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
