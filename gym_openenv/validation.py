"""The checks of ``gym-openenv validate``: one server folder, statically and live.

Example:
    >>> report = validate_folder(Path("gym_openenv/servers/echo"))        # doctest: +SKIP
    >>> report.failed, [row[0] for row in report.rows][:3]    # doctest: +SKIP
    (False, ['openenv.yaml', 'folder name', 'Dockerfile'])
"""

import json
import re
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gym_openenv.manifest import Manifest, import_object, load_manifest

__all__ = ["CheckReport", "ServerFolderChecks", "missing_requirements", "schema_summary", "validate_folder"]

_MODEL_KINDS = ("action", "observation", "state")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # gymnasium colours its warnings


class CheckReport:
    """Runs named checks in order and keeps a ``(check, status, detail)`` row for each.

    Status is ``ok``, ``WARN`` (passed, with warnings), ``FAIL`` or ``SKIP``
    (an earlier check it needs failed).
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    @property
    def failed(self) -> bool:
        return any(status == "FAIL" for _, status, _ in self.rows)

    def run(self, name: str, check: Callable[[], str], *, needs: bool = True) -> bool:
        if not needs:
            self.rows.append((name, "SKIP", "an earlier check failed"))
            return False
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                detail = check()
        except Exception as e:  # a check's failure is the report's content, whatever the exception
            message = str(e).strip() or type(e).__name__
            self.rows.append((name, "FAIL", f"{type(e).__name__}: {message}"))
            return False
        notes = sorted({_ANSI_ESCAPE.sub("", str(w.message)).split("\n")[0] for w in caught})
        status = "WARN" if notes else "ok"
        self.rows.append((name, status, "; ".join(filter(None, [detail, *notes]))))
        return True


def missing_requirements(manifest: Manifest) -> list[str]:
    """The manifest's ``dependencies`` not installed here, each with the reason."""
    missing = []
    for requirement in manifest.requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{requirement} (not installed)")
            continue
        if installed not in requirement.specifier:
            missing.append(f"{requirement} (installed {installed})")
    return missing


def schema_summary(schema: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a model and the server's /schema: the fields,
    which are required, and which kind of space each one is (its size may
    depend on the instance)."""
    properties = schema.get("properties", {})
    return {
        "title": schema.get("title"),
        "fields": {name: (prop.get("x-gym-space") or {}).get("type") for name, prop in properties.items()},
        "required": sorted(schema.get("required", [])),
    }


class ServerFolderChecks:
    """The checks, in order; each returns its detail or raises.

    Later checks use what earlier ones found (the manifest, the model classes,
    the running server's URL); :func:`validate_folder` skips them when those failed.
    """

    def __init__(self, folder: Path, env_kwargs: dict[str, Any], timeout: float):
        self.folder = folder
        self.env_kwargs = env_kwargs
        self.timeout = timeout
        self.manifest: Manifest | None = None
        self.models: dict[str, type] = {}
        self.environment: str | None = None
        self.provider: Any = None
        self.url: str | None = None

    def read_manifest(self) -> str:
        self.manifest = load_manifest(self.folder)
        return f"{self.manifest.name} {self.manifest.version}"

    def folder_name(self) -> str:
        if self.folder.name != self.manifest.name:
            raise ValueError(f"manifest name {self.manifest.name!r} differs from the folder name {self.folder.name!r}")
        return f"gym_openenv/servers/{self.manifest.name}"

    def dockerfile(self) -> str:
        path = self.folder / self.manifest.server.dockerfile
        if not path.is_file():
            raise FileNotFoundError(f"server.dockerfile {self.manifest.server.dockerfile!r}: no file {path}")
        return str(path.relative_to(self.folder))

    def dependencies(self) -> str:
        missing = missing_requirements(self.manifest)
        if missing:
            raise ModuleNotFoundError(f"pip install {' '.join(repr(m.split(' (')[0]) for m in missing)}: {', '.join(missing)}")
        return ", ".join(self.manifest.dependencies) or "none declared"

    def import_models(self) -> str:
        from gym_openenv.spaces import ModelSpec, describe

        self.models = {kind: import_object(getattr(self.manifest.models, kind)) for kind in _MODEL_KINDS}
        spaces = {kind: describe(ModelSpec.from_model(self.models[kind]).space) for kind in ("action", "observation")}
        return f"action space {spaces['action']}; observation space {spaces['observation']}"

    def _same_models(self, cls: type, what: str) -> None:
        for kind in _MODEL_KINDS:
            declared = getattr(cls, f"{kind}_type")
            if declared is not self.models[kind]:
                raise TypeError(f"{what}.{kind}_type is {declared.__name__}, the manifest's models.{kind} is {self.models[kind].__name__}")

    def client(self) -> str:
        from gym_openenv.client import EnvClient

        cls = import_object(self.manifest.client.import_path)
        if not (isinstance(cls, type) and issubclass(cls, EnvClient)):
            raise TypeError(f"{self.manifest.client.import_path} is not an EnvClient subclass")
        self._same_models(cls, cls.__name__)
        return cls.__name__

    def app(self) -> str:
        host = getattr(getattr(import_object(self.manifest.app), "state", None), "host", None)
        if host is None:
            raise TypeError(f"{self.manifest.app} is not an app made by gym_openenv.server.create_app")
        self._same_models(host.env_cls, host.env_cls.__name__)
        self.environment = f"{host.env_cls.__module__}:{host.env_cls.__qualname__}"
        return self.environment

    def start_server(self) -> str:
        from gym_openenv.providers import LocalProcessProvider

        self.provider = LocalProcessProvider(self.environment, self.env_kwargs, startup_timeout=self.timeout)
        self.url = self.provider.start()
        return f"{self.url} kwargs={json.dumps(self.env_kwargs)}"

    def schema(self) -> str:
        from gym_openenv.client import LoopThread, fetch_json
        from gym_openenv.spaces import ModelSpec

        served = LoopThread.shared().run(fetch_json(self.url, "/schema"), 30)
        for kind in _MODEL_KINDS:
            expected = schema_summary(ModelSpec.from_model(self.models[kind]).json_schema())
            actual = schema_summary(served.get(kind, {}))
            if expected != actual:
                raise ValueError(f"/schema {kind} is {actual}, the model gives {expected}")
        return "action, observation and state agree with the models"

    def spaces(self) -> str:
        from gym_openenv.client import LoopThread
        from gym_openenv.schema import EnvSchema
        from gym_openenv.spaces import describe

        derived = LoopThread.shared().run(EnvSchema.fetch(self.url), 30)
        return f"action {describe(derived.action.space)}; observation {describe(derived.observation.space)}"

    def check_env(self) -> str:
        from gymnasium.utils.env_checker import check_env

        from gym_openenv.env import OpenEnvEnv

        env = OpenEnvEnv(url=self.url)
        try:
            check_env(env, skip_render_check=True)
        finally:
            env.close()
        return "passed"

    def stop_server(self) -> None:
        if self.provider is not None:
            self.provider.stop()


def validate_folder(folder: Path, env_kwargs: dict[str, Any] | None = None, timeout: float = 120.0) -> CheckReport:
    """Run every check on ``folder``; the server it starts is stopped again."""
    check = ServerFolderChecks(Path(folder).resolve(), dict(env_kwargs or {}), timeout)
    report = CheckReport()
    has_manifest = report.run("openenv.yaml", check.read_manifest)
    report.run("folder name", check.folder_name, needs=has_manifest)
    report.run("Dockerfile", check.dockerfile, needs=has_manifest)
    deps_ok = report.run("dependencies installed", check.dependencies, needs=has_manifest)
    models_ok = report.run("models import", check.import_models, needs=deps_ok)
    report.run("client", check.client, needs=models_ok)
    app_ok = report.run("app", check.app, needs=models_ok)
    try:
        served = report.run("server starts", check.start_server, needs=app_ok)
        report.run("/schema matches models", check.schema, needs=served)
        report.run("spaces derive", check.spaces, needs=served)
        report.run("gymnasium check_env", check.check_env, needs=served)
    finally:
        check.stop_server()
    return report
