"""The checks of ``gym-openenv validate``: an environment folder (statically, then its
own server, live) or a running server at a URL.

Folders are upstream OpenEnv's (``openenv.yaml`` with ``spec_version: 1``, or none; the
app built with openenv-core) or gym_openenv's; checks that need what only ours
declare (``models``, ``client``) say so and pass.

Example:
    >>> from gym_openenv.registry import find
    >>> report = validate_folder(find("echo").server)       # gym_openenv/servers/echo
    >>> report.failed, [row[0] for row in report.rows][:3]
    (False, ['openenv.yaml', 'layout', 'pyproject.toml'])
    >>> from gym_openenv.providers import LocalProcessProvider
    >>> provider = LocalProcessProvider(find("echo").environment)
    >>> url = provider.start()                              # a running server: http://127.0.0.1:<port>
    >>> validate_url(url).failed
    False
    >>> provider.stop()
"""

import json
import re
import tomllib
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
from packaging.requirements import Requirement

from gym_openenv.endpoint import Endpoint
from gym_openenv.manifest import MANIFEST_FILE, Manifest, import_object, make_importable
from gym_openenv.registry import RegistryEntry, find_folder, folder_entry, manifest_of

__all__ = ["CheckReport", "FolderChecks", "ServerChecks", "missing_requirements", "schema_summary", "validate_folder", "validate_url"]

_MODEL_KINDS = ("action", "observation", "state")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # gymnasium colours its warnings
_PACKAGE_ROOT = Path(__file__).resolve().parent


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


def missing_requirements(requirements: list[Requirement]) -> list[str]:
    """The requirements not installed here, each with the reason."""
    missing = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
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


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


class ServerChecks:
    """Checks of a running OpenEnv server (``validate --url``, and a folder's server once started)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        endpoint = Endpoint.parse(self.url, self.token)
        with endpoint.http_client(self.timeout) as http:
            return http.request(method, endpoint.http_url(path), **kwargs)

    def _json(self, path: str) -> Any:
        response = self._request("GET", path)
        if response.status_code != 200:
            raise ValueError(f"GET {path}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def health(self) -> str:
        status = self._json("/health").get("status")
        if status != "healthy":
            raise ValueError(f"GET /health: status {status!r}, expected 'healthy'")
        return "healthy"

    def metadata(self) -> str:
        metadata = self._json("/metadata")
        for key in ("name", "description"):
            if not isinstance(metadata.get(key), str):
                raise ValueError(f"GET /metadata: {key!r} missing or not a string")
        return f"{metadata['name']}: {metadata['description'][:80]}"

    def schema(self) -> str:
        schema = self._json("/schema")
        absent = [kind for kind in _MODEL_KINDS if not isinstance(schema.get(kind), dict)]
        if absent:
            raise ValueError(f"GET /schema: no {', '.join(absent)} schema")
        return "action, observation and state schemas"

    def spaces(self) -> str:
        from gym_openenv.client import LoopThread
        from gym_openenv.schema import EnvSchema
        from gym_openenv.spaces import describe

        derived = LoopThread.shared().run(EnvSchema.fetch(self.url, self.token), self.timeout)
        return f"action {describe(derived.action.space)}; observation {describe(derived.observation.space)}"

    def mcp(self) -> str:
        """POST /mcp ``tools/list``: a server that offers the route must answer JSON-RPC 2.0."""
        response = self._request("POST", "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        if response.status_code in (404, 405):
            return "not offered (no MCP tools)"
        reply = response.json() if response.status_code == 200 else None
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
            raise ValueError(f"POST /mcp: HTTP {response.status_code}, not a JSON-RPC 2.0 reply: {response.text[:200]}")
        tools = (reply.get("result") or {}).get("tools")
        if isinstance(tools, list):
            return f"{len(tools)} tools: {', '.join(str(t.get('name')) for t in tools[:8])}" if tools else "no tools"
        return f"JSON-RPC error: {(reply.get('error') or {}).get('message', reply)}"

    def check_env(self) -> str:
        from gymnasium.utils.env_checker import check_env

        from gym_openenv.env import OpenEnvEnv

        env = OpenEnvEnv(url=self.url, token=self.token)
        try:
            check_env(env, skip_render_check=True)
        finally:
            env.close()
        return "passed"

    def run(self, report: CheckReport, needs: bool = True) -> None:
        up = report.run("GET /health", self.health, needs=needs)
        report.run("GET /metadata", self.metadata, needs=up)
        has_schema = report.run("GET /schema", self.schema, needs=up)
        derived = report.run("spaces derive", self.spaces, needs=has_schema)
        report.run("POST /mcp", self.mcp, needs=up)
        report.run("gymnasium check_env", self.check_env, needs=derived)


class FolderChecks:
    """The static checks of an environment folder, in order; each returns its detail or raises.

    Later checks use what earlier ones found (the manifest, the model classes);
    :func:`validate_folder` skips them when those failed.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest: Manifest | None = None
        self.entry: RegistryEntry | None = None
        self.models: dict[str, type] = {}
        # gym_openenv's own servers live in its package; its pyproject.toml is theirs.
        self.in_package = folder.is_relative_to(_PACKAGE_ROOT)

    def read_manifest(self) -> str:
        self.manifest = manifest_of(self.folder)
        if not (self.folder / MANIFEST_FILE).is_file():
            _warn(f"no {MANIFEST_FILE}: read as OpenEnv reads such a folder (name {self.manifest.name!r}, app {self.manifest.app})")
        kept = sorted(self.manifest.model_extra or {})
        return f"{self.manifest.name} {self.manifest.version or ''}".strip() + (f" (kept: {', '.join(kept)})" if kept else "")

    def layout(self) -> str:
        self.entry = find_folder(self.folder) or folder_entry(self.folder)
        present = [name for name in ("models.py", "client.py", "__init__.py", "README.md") if (self.folder / name).is_file()]
        if "models.py" not in present:
            raise FileNotFoundError(f"no models.py in {self.folder}")
        for name in ("client.py", "__init__.py", "README.md"):
            if name not in present:
                _warn(f"no {name} (OpenEnv's folders have one)")
        return f"{self.entry.id}: {', '.join(present)}, app {self.manifest.app}"

    def pyproject(self) -> str:
        path = self.folder / "pyproject.toml"
        if self.in_package:
            return "part of gym_openenv (its pyproject.toml)"
        if not path.is_file():
            raise FileNotFoundError("no pyproject.toml (OpenEnv folders install with it; `gym-openenv init` writes one)")
        project = tomllib.loads(path.read_text()).get("project", {})
        if "server" not in project.get("scripts", {}):
            _warn("no [project.scripts] server entry point (OpenEnv's `uv run server`)")
        return f"{project.get('name', '?')} {project.get('version', '')}".strip()

    def dockerfile(self) -> str:
        path = self.manifest.dockerfile_in(self.folder)
        if not path.is_file():
            raise FileNotFoundError(f"no Dockerfile at {path.relative_to(self.folder)}")
        return str(path.relative_to(self.folder))

    def _requirements(self) -> list[Requirement]:
        requirements = self.manifest.requirements()
        path = self.folder / "pyproject.toml"
        if path.is_file() and not self.in_package:
            requirements += [Requirement(r) for r in tomllib.loads(path.read_text()).get("project", {}).get("dependencies", [])]
        return requirements

    def dependencies(self) -> str:
        requirements = self._requirements()
        missing = missing_requirements(requirements)
        if missing:
            raise ModuleNotFoundError(f"pip install {' '.join(repr(m.split(' (')[0]) for m in missing)}: {', '.join(missing)}")
        return ", ".join(str(r) for r in requirements) or "none declared"

    def import_models(self) -> str:
        from gym_openenv.spaces import ModelSpec, describe

        if self.manifest.models is None:
            return "no models declared in openenv.yaml: spaces come from the server's /schema"
        self._importable()
        self.models = {kind: import_object(getattr(self.manifest.models, kind)) for kind in _MODEL_KINDS}
        spaces = {kind: describe(ModelSpec.from_model(self.models[kind]).space) for kind in ("action", "observation")}
        return f"action space {spaces['action']}; observation space {spaces['observation']}"

    def _importable(self) -> None:
        # The folder's modules import as its server imports them (folder and parent on sys.path).
        if not self.in_package:
            make_importable(self.folder)

    def _same_models(self, cls: type, what: str) -> None:
        for kind in _MODEL_KINDS:
            declared = getattr(cls, f"{kind}_type")
            if declared is not self.models[kind]:
                raise TypeError(f"{what}.{kind}_type is {declared.__name__}, the manifest's models.{kind} is {self.models[kind].__name__}")

    def client(self) -> str:
        from gym_openenv.client import EnvClient

        if self.manifest.client is None:
            return "no gym_openenv client declared (an OpenEnv folder's client.py is its own)"
        cls = import_object(self.manifest.client.import_path)
        if not (isinstance(cls, type) and issubclass(cls, EnvClient)):
            raise TypeError(f"{self.manifest.client.import_path} is not an EnvClient subclass")
        self._same_models(cls, cls.__name__)
        return cls.__name__

    def app(self) -> str:
        if self.manifest.models is None:
            return f"{self.manifest.app}: imported by the server below"
        app = import_object(self.entry.environment if self.entry.serves_folder_app else self.manifest.app)
        host = getattr(getattr(app, "state", None), "host", None)
        if host is None:
            raise TypeError(f"{self.manifest.app} is not an app made by gym_openenv.server.create_app, but models are declared")
        self._same_models(host.env_cls, host.env_cls.__name__)
        return f"{host.env_cls.__module__}:{host.env_cls.__qualname__}"

    def schema_matches(self, url: str) -> str:
        if not self.models:
            return "no models declared"
        served = ServerChecks(url)._json("/schema")
        from gym_openenv.spaces import ModelSpec

        for kind in _MODEL_KINDS:
            expected = schema_summary(ModelSpec.from_model(self.models[kind]).json_schema())
            actual = schema_summary(served.get(kind, {}))
            if expected != actual:
                raise ValueError(f"/schema {kind} is {actual}, the model gives {expected}")
        return "action, observation and state agree with the models"


def validate_folder(folder: Path, env_kwargs: dict[str, Any] | None = None, timeout: float = 120.0) -> CheckReport:
    """Run every check on an environment folder; the server it starts is stopped again."""
    from gym_openenv.providers import LocalProcessProvider

    check = FolderChecks(Path(folder).resolve())
    report = CheckReport()
    has_manifest = report.run(MANIFEST_FILE, check.read_manifest)
    laid_out = report.run("layout", check.layout, needs=has_manifest)
    report.run("pyproject.toml", check.pyproject, needs=has_manifest)
    report.run("Dockerfile", check.dockerfile, needs=has_manifest)
    deps_ok = report.run("dependencies installed", check.dependencies, needs=has_manifest)
    models_ok = report.run("models import", check.import_models, needs=deps_ok and laid_out)
    report.run("client", check.client, needs=models_ok)
    app_ok = report.run("app", check.app, needs=models_ok)
    provider = None
    state: dict[str, str] = {}

    def start() -> str:
        nonlocal provider
        kwargs = {**check.entry.kwargs, **(env_kwargs or {})}
        provider = LocalProcessProvider(check.entry.environment, kwargs, startup_timeout=timeout)
        state["url"] = provider.start()
        return f"{state['url']} kwargs={json.dumps(kwargs)}"

    try:
        served = report.run("server starts", start, needs=app_ok)
        report.run("/schema matches models", lambda: check.schema_matches(state["url"]), needs=served)
        ServerChecks(state.get("url", ""), timeout=timeout).run(report, needs=served)
    finally:
        if provider is not None:
            provider.stop()
    return report


def validate_url(url: str, token: str | None = None, timeout: float = 30.0) -> CheckReport:
    """Check a running OpenEnv server: health, metadata, schema, spaces, MCP, check_env."""
    report = CheckReport()
    ServerChecks(url, token, timeout).run(report)
    return report
