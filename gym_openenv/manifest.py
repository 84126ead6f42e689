"""``openenv.yaml``: the manifest of one environment folder, upstream's or ours.

OpenEnv's own shape (``spec_version: 1``) is the base; every key below it is
optional and every key this model does not know is kept (``Manifest.model_extra``),
so any upstream folder reads as it is::

    spec_version: 1
    name: maze_env
    type: space                 # how OpenEnv deploys it (a Hugging Face Space)
    runtime: fastapi
    app: server.app:app         # the ASGI app, imported from the folder
    port: 8000                  # the port its container serves on

gym_openenv's folders add what a gym id and ``gym-openenv validate`` use::

    version: 0.1.0
    description: Echoes each message back.
    dockerfile: server/Dockerfile          # default: server/Dockerfile, else Dockerfile
    client: {module: gym_openenv.servers.echo.client, class: EchoEnv}
    models:
      action: gym_openenv.servers.echo.models:EchoAction
      observation: gym_openenv.servers.echo.models:EchoObservation
      state: gym_openenv.servers.echo.models:EchoState
    dependencies: ["ale-py>=0.10"]          # pip requirement strings

(The older ``server: {port, dockerfile}`` section is read as ``port`` and ``dockerfile``.)

Example:
    >>> from gym_openenv.registry import find
    >>> m = load_manifest(find("echo").server)         # gym_openenv/servers/echo
    >>> m.models.action
    'gym_openenv.servers.echo.models:EchoAction'

``import_object`` is the one loader of ``"module:Name"`` strings in gym_openenv
(environment classes, apps, models, clients); ``"module:Name@FOLDER"`` imports
from an environment folder, the way OpenEnv runs one.
"""

import pkgutil
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DEFAULT_APP",
    "MANIFEST_FILE",
    "Manifest",
    "ManifestError",
    "folder_target",
    "import_object",
    "load_manifest",
    "make_importable",
    "parse_manifest",
    "split_target",
]

MANIFEST_FILE = "openenv.yaml"
#: What OpenEnv runs when a folder names no app: ``uvicorn server.app:app`` from the folder.
DEFAULT_APP = "server.app:app"
_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^{_MODULE}:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODULE_PATH = re.compile(rf"^{_MODULE}$")
_DOCKERFILES = ("server/Dockerfile", "Dockerfile")
FOLDER_SEPARATOR = "@"


class ManifestError(ValueError):
    """An ``openenv.yaml`` that is missing, unreadable or does not follow the schema."""


def _import_path(value: str, field: str) -> str:
    if not _IMPORT_PATH.match(value):
        raise ValueError(f"{field} must be 'package.module:Name', got {value!r}")
    return value


class _Section(BaseModel):
    # Inside our own sections an unknown key is a typo: reject it.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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


class Manifest(BaseModel):
    """The validated content of an ``openenv.yaml``; keys it does not know are kept in ``model_extra``."""

    # Upstream manifests carry keys of their own (``action``, ``observation`` in older ones): keep them.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    spec_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", description="lowercase letters, digits, underscores, hyphens")
    type: str = Field("space", description="how OpenEnv deploys it ('space': a Hugging Face Space)")
    runtime: Literal["fastapi"] = "fastapi"
    app: str = Field(DEFAULT_APP, description="the ASGI app, 'module:attribute', imported from the folder")
    port: int = Field(8000, ge=1, le=65535, description="the port the server listens on in its container")
    version: str | None = None
    description: str | None = Field(None, min_length=1)
    dockerfile: str | None = Field(None, min_length=1, description="path of the Dockerfile, relative to the folder")
    client: ClientSection | None = None
    models: ModelsSection | None = None
    dependencies: list[str] = Field(default_factory=list, description="pip requirement strings")

    @model_validator(mode="before")
    @classmethod
    def _server_section(cls, data: Any) -> Any:
        # gym_openenv's first manifests nested these two under ``server:``.
        if isinstance(data, dict) and isinstance(data.get("server"), dict):
            data = dict(data)
            server = dict(data.pop("server"))
            for key in ("port", "dockerfile"):
                if key in server:
                    data.setdefault(key, server.pop(key))
            if server:
                raise ValueError(f"server: unknown keys {sorted(server)} (only port and dockerfile)")
        return data

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Version(str(value))
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

    def dockerfile_in(self, folder: Path) -> Path:
        """The folder's Dockerfile: ``dockerfile`` if set, else ``server/Dockerfile`` or ``Dockerfile`` (as OpenEnv looks)."""
        if self.dockerfile is not None:
            return folder / self.dockerfile
        for candidate in _DOCKERFILES:
            if (folder / candidate).is_file():
                return folder / candidate
        return folder / _DOCKERFILES[0]


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``openenv.yaml`` (``path`` is the file or its folder).

    Raises:
        ManifestError: naming the file and every offending field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path}: no such file (every environment folder needs an {MANIFEST_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], where: str | Path) -> Manifest:
    """Validate manifest fields already read (``where`` names them in errors)."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors()
        )
        raise ManifestError(f"{where}: {problems}") from None


def folder_target(app: str, folder: str | Path) -> str:
    """``"server.app:app"``, ``/tmp/maze_env`` -> ``"server.app:app@/tmp/maze_env"``: an app imported from its folder."""
    return f"{app}{FOLDER_SEPARATOR}{Path(folder).resolve()}"


def split_target(target: str) -> tuple[str, Path | None]:
    """``"module:Name@FOLDER"`` -> (``"module:Name"``, FOLDER); ``"module:Name"`` -> (it, None)."""
    path, sep, folder = target.partition(FOLDER_SEPARATOR)
    return path, (Path(folder) if sep else None)


def make_importable(folder: str | Path) -> None:
    """Put an environment folder and its parent first on ``sys.path`` (the folder first), as
    OpenEnv's images do: its ``server``/``models`` and its package name both import."""
    folder = Path(folder).resolve()
    for entry in (str(folder.parent), str(folder)):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def import_object(target: str) -> Any:
    """``"package.module:Name"`` -> the object (``Name`` may be dotted).

    ``"module:Name@FOLDER"`` first makes FOLDER and its parent importable, as
    OpenEnv's images do (``PYTHONPATH`` holds the folder; ``uvicorn server.app:app``
    runs from it), so an upstream folder's ``server.app`` and ``models`` import
    unmodified.

    Raises:
        ImportError: the module or the name does not exist.
        ValueError: ``target`` is not ``module:Name``.
    """
    path, folder = split_target(target)
    if ":" not in path:
        raise ValueError(f"expected 'module:Name', got {target!r}")
    if folder is not None:
        make_importable(folder)
    try:
        return pkgutil.resolve_name(path)
    except AttributeError as e:
        raise ImportError(str(e)) from None
