"""Run the server in a Docker container built from ``gym_openenv/servers/<name>/server/Dockerfile``.

Example:
    >>> env = gym.make("openenv/echo-v0", provider="docker")   # builds an image: minutes  # doctest: +SKIP
    >>> url, provider = from_docker_image("gym-openenv/echo:latest")   # needs the image   # doctest: +SKIP

A gym_openenv server's image is built from the repository root (only the files a
server image needs: ``pyproject.toml``, ``gym_openenv/`` and the server's folder); an
OpenEnv environment folder's (``register_folder``) from the folder itself, with its own
Dockerfile, and runs the image's own ``CMD``. Either is tagged with a hash of its
context, so unchanged inputs reuse the image and edited ones get a fresh build.
:func:`build_image` is the one image builder (``gym-openenv build`` uses it too). The
container publishes its port on 127.0.0.1 only and is removed on
:meth:`~DockerProvider.stop`, at interpreter exit, and, should this process be
killed, by the next provider that starts (containers carry their owner's pid).

Direct socket: the provider makes a private folder (mode 0700, this user's) and
mounts it into the container at the same path, and the server puts its direct
socket there (``$OPENENV_DIRECT_SOCKET``), so the path it advertises in
``/metadata`` is valid on this machine too and clients here skip the WebSocket
(:mod:`gym_openenv.direct`). The socket stays 0600; where the container's root
is not this user (a rootful engine, a client that is not root) it is handed to
this user. The folder goes with the container. Shared-memory observations cross
the boundary on the direct socket, where the server passes its block's descriptor
with the reply that opens the sessions. Over the WebSocket a client finds the
block through the server's pid, which outside the container's pid namespace is
another process's, so it declines the block and arrays travel in the frames;
``run_options={"pid_mode": "host"}`` shares this machine's pid namespace with the
container and the block is mapped (for a client that is root or the container's
user), at the cost of the container seeing, and its root signalling, every
process here.

Offline engines: ``$OPENENV_DOCKER_BASE_IMAGE`` becomes the Dockerfile's
``BASE_IMAGE``, ``$OPENENV_DOCKER_WHEELS`` (a wheel directory) is copied into
the context as ``.docker-wheels/`` and ``$OPENENV_DOCKER_PIP_ARGS`` (default
``--no-index --find-links /app/.docker-wheels`` when there are wheels) becomes
``PIP_ARGS``; ``scripts/docker-setup.sh`` prepares all three.
"""

import atexit
import functools
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import docker

from gym_openenv.errors import ServerStartError
from gym_openenv.manifest import split_target
from gym_openenv.providers.base import Provider
from gym_openenv.registry import manifest_of

__all__ = ["DockerProvider", "build_image", "dockerfile_for", "from_docker_image", "image_source"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINER_PORT = 8000
WHEELS_IN_CONTEXT = ".docker-wheels"
# Labels on every container we start: how a later process recognises our orphans.
OWNER_LABEL = "org.gym-openenv.owner"
# The private folder mounted for the direct socket, removed with an orphan.
DIRECT_FOLDER_LABEL = "org.gym-openenv.direct-folder"
_DIRECT_FOLDER_PREFIX = "gym-openenv-docker-"
# Files and folders of the repository root every server image needs.
_CONTEXT_FILES = ("pyproject.toml", "README.md", "registry.yaml", "constraints.txt", "LICENSE")
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", "node_modules", ".git"}

_LIVE: "weakref.WeakSet[DockerProvider]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for provider in list(_LIVE):
        provider.stop()


def docker_client() -> docker.DockerClient:
    """A client for the engine at ``$DOCKER_HOST`` (or the default socket), checked to answer."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as e:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise ServerStartError(
            f"no Docker engine answers at {where} ({e}); start one, e.g. `eval \"$(bash scripts/docker-setup.sh)\"`"
        ) from None
    return client


def dockerfile_for(environment: str) -> Path:
    """``gym_openenv.servers.echo.server.environment:EchoEnvironment`` -> ``gym_openenv/servers/echo/server/Dockerfile``."""
    parts = environment.partition(":")[0].split(".")
    if "server" not in parts:
        raise ValueError(f"environment {environment!r} is not in a gym_openenv/servers/<name>/server/ folder; pass image= instead")
    path = REPO_ROOT.joinpath(*parts[: parts.index("server") + 1], "Dockerfile")
    if not path.is_file():
        raise ValueError(f"no Dockerfile for {environment!r} at {path}; pass image= instead")
    return path


def image_source(environment: str) -> tuple[Path, Path | None]:
    """(Dockerfile, build context) of the server ``environment`` names.

    An environment folder's own app (``"server.app:app@/path/to/folder"``): its Dockerfile
    (``openenv.yaml``'s ``dockerfile``, else ``server/Dockerfile`` or ``Dockerfile``), the
    folder as context. A gym_openenv Environment class: its server folder's Dockerfile,
    the repository as context (None).
    """
    folder = split_target(environment)[1]
    if folder is None:
        return dockerfile_for(environment), None
    dockerfile = manifest_of(folder).dockerfile_in(folder)
    if not dockerfile.is_file():
        raise ValueError(f"{folder} has no Dockerfile ({dockerfile.relative_to(folder)}); pass image= instead")
    return dockerfile, folder


def _walk(root: Path, base: Path) -> list[tuple[str, Path]]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            if not name.endswith((".pyc", ".pyo")):
                path = Path(dirpath) / name
                files.append((path.relative_to(base).as_posix(), path))
    return files


def _context_files(dockerfile: Path, context: Path | None = None) -> list[tuple[str, Path]]:
    """(name in the context, file) for everything the image needs, sorted: all of ``context``,
    or of the repository what a gym_openenv server image needs."""
    if context is not None:
        return sorted(_walk(context, context))
    files: list[tuple[str, Path]] = []
    for root in [REPO_ROOT / "gym_openenv", dockerfile.parent.parent, *(REPO_ROOT / name for name in _CONTEXT_FILES)]:
        if root.is_file():
            files.append((root.relative_to(REPO_ROOT).as_posix(), root))
        files += _walk(root, REPO_ROOT)
    if not (REPO_ROOT / "pyproject.toml").is_file():  # installed from a wheel: REPO_ROOT is site-packages
        files.append(("pyproject.toml", _installed_pyproject()))
    return sorted(set(files))


@functools.cache
def _installed_pyproject() -> Path:
    """A ``pyproject.toml`` for images built from an installed (wheel) gym_openenv.

    The Dockerfiles install ``/app`` with pip as a project; without a source checkout
    this file gives that project the installed distribution's name, version,
    dependencies, extras and scripts, so the image installs what the wheel did.
    """
    dist = importlib.metadata.distribution("gym-openenv")
    dependencies: list[str] = []
    extras: dict[str, list[str]] = {}
    for requirement in dist.requires or []:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra is None:
            dependencies.append(requirement)
            continue
        # Drop the extra's own marker; any other marker stays on the requirement.
        rest = re.sub(r"""\s*(and\s+)?extra\s*==\s*["'][^"']+["']""", "", requirement).strip().rstrip(";").strip()
        extras.setdefault(extra.group(1), []).append(rest)
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    plugins = {ep.name: ep.value for ep in dist.entry_points if ep.group == "gymnasium.envs"}
    toml = [
        "[build-system]",
        'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"',
        "[project]",
        f"name = {json.dumps(dist.metadata['Name'])}",
        f"version = {json.dumps(dist.version)}",
        f"dependencies = {json.dumps(dependencies)}",
        "[project.optional-dependencies]",
        *(f"{json.dumps(name)} = {json.dumps(reqs)}" for name, reqs in sorted(extras.items())),
        "[project.scripts]",
        *(f"{json.dumps(name)} = {json.dumps(value)}" for name, value in sorted(scripts.items())),
        '[project.entry-points."gymnasium.envs"]',
        *(f"{json.dumps(name)} = {json.dumps(value)}" for name, value in sorted(plugins.items())),
        "[tool.setuptools.packages.find]",
        'include = ["gym_openenv*"]',
    ]
    path = Path(tempfile.mkdtemp(prefix="gym-openenv-context-")) / "pyproject.toml"
    path.write_text("\n".join(toml) + "\n")
    return path


def _wheels(wheel_dir: str | None) -> list[Path]:
    if not wheel_dir:
        return []
    if not os.path.isdir(wheel_dir):
        raise ValueError(f"OPENENV_DOCKER_WHEELS={wheel_dir!r} is not a directory")
    return sorted(p for p in Path(wheel_dir).iterdir() if p.suffix == ".whl")


def _default_build_args(wheels: list[Path]) -> dict[str, str]:
    args = {}
    if os.environ.get("OPENENV_DOCKER_BASE_IMAGE"):
        args["BASE_IMAGE"] = os.environ["OPENENV_DOCKER_BASE_IMAGE"]
    if os.environ.get("OPENENV_DOCKER_PIP_ARGS"):
        args["PIP_ARGS"] = os.environ["OPENENV_DOCKER_PIP_ARGS"]
    elif wheels:
        args["PIP_ARGS"] = f"--no-index --find-links /app/{WHEELS_IN_CONTEXT}"
    return args


def build_image(
    dockerfile: str | Path,
    *,
    context: str | Path | None = None,
    tag: str | None = None,
    build_args: dict[str, str] | None = None,
    wheel_dir: str | None = None,
    rebuild: bool = False,
    client: Any = None,
) -> str:
    """Build (or reuse) the image of a Dockerfile; return its tag.

    Args:
        dockerfile: the Dockerfile.
        context: the build context (an environment folder); None: the repository,
            for a gym_openenv server's Dockerfile (see :func:`image_source`).
        tag: default ``gym-openenv/<folder>:<hash of context and build args>``, so an
            image whose inputs have not changed is reused without building.
        build_args: on top of the offline defaults (``$OPENENV_DOCKER_BASE_IMAGE``...).
        wheel_dir: a wheel directory placed in the context as ``.docker-wheels/``
            (default ``$OPENENV_DOCKER_WHEELS``).
        rebuild: build even when an image with the tag exists.
    """
    client = client or docker_client()
    dockerfile = Path(dockerfile).resolve()
    context = Path(context).resolve() if context is not None else None
    wheel_dir = wheel_dir if wheel_dir is not None else os.environ.get("OPENENV_DOCKER_WHEELS")
    wheels = _wheels(wheel_dir)
    build_args = {**_default_build_args(wheels), **(build_args or {})}
    files = _context_files(dockerfile, context)
    digest = hashlib.sha256(json.dumps(build_args, sort_keys=True).encode())
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes())
    for wheel in wheels:  # wheel file names carry their versions
        digest.update(wheel.name.encode())
    name = (context or dockerfile.parent.parent).name.lower()
    tag = tag or f"gym-openenv/{name}:{digest.hexdigest()[:12]}"
    if not rebuild and _image_exists(client, tag):
        return tag
    in_context = dockerfile.relative_to(context or REPO_ROOT).as_posix()
    try:
        client.images.build(
            fileobj=_context_tar(files, wheels),
            custom_context=True,
            dockerfile=in_context,
            tag=tag,
            buildargs=build_args,
            rm=True,
            forcerm=True,
            labels={"org.gym-openenv.dockerfile": in_context},
        )
    except docker.errors.BuildError as e:
        log = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in e.build_log)
        raise ServerStartError(f"docker build of {dockerfile} failed: {e.msg}\n{log[-4000:]}") from None
    return tag


def _image_exists(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _context_tar(files: list[tuple[str, Path]], wheels: list[Path]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in files:
            tar.add(path, arcname=name, recursive=False)
        for wheel in wheels:
            tar.add(wheel, arcname=f"{WHEELS_IN_CONTEXT}/{wheel.name}", recursive=False)
    buffer.seek(0)
    return buffer


def remove_orphans(client: Any) -> list[str]:
    """Remove containers started by processes of this machine that no longer exist."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        host, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            container.remove(force=True)
            _remove_direct_folder(container.labels.get(DIRECT_FOLDER_LABEL))
            removed.append(container.id)
    return removed


def _make_direct_folder() -> str:
    """A private folder (0700, this user's) for a container's direct socket."""
    return tempfile.mkdtemp(prefix=_DIRECT_FOLDER_PREFIX)


def _remove_direct_folder(folder: str | None) -> None:
    """Remove a folder :func:`_make_direct_folder` made; a label naming anything else is ignored."""
    if folder and Path(folder).parent == Path(tempfile.gettempdir()) and Path(folder).name.startswith(_DIRECT_FOLDER_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DockerProvider(Provider):
    """Run an environment server in a container.

    Args:
        environment: the Environment class, ``"module:Class"``; its server folder's
            Dockerfile is built unless ``image`` is given.
        env_kwargs: arguments for the environment (passed as ``$OPENENV_ENV_KWARGS``).
        image: run this image instead of building one.
        rebuild: build even when an image with the same inputs exists.
        build_args: Dockerfile build arguments (on top of the offline defaults).
        server_args: extra launcher flags (``--max-sessions 512``); needs ``environment``.
        env: extra environment variables for the container.
        host: host address the port is published on (loopback by default).
        container_port: the port the server listens on inside the container.
        startup_timeout: seconds to wait for ``/health``.
        run_options: more ``docker run`` options (``mem_limit``, ``cpu_quota``, ``network``...).
        direct_socket: give the server a direct socket clients on this machine can reach
            (see the module docstring); ``$OPENENV_DIRECT_SOCKET`` in ``env`` or
            ``--direct-socket`` in ``server_args`` take precedence.
    """

    def __init__(
        self,
        environment: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        *,
        image: str | None = None,
        rebuild: bool = False,
        build_args: dict[str, str] | None = None,
        server_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        container_port: int = CONTAINER_PORT,
        startup_timeout: float = 120.0,
        run_options: dict[str, Any] | None = None,
        direct_socket: bool = True,
    ):
        if environment is None and image is None:
            raise ValueError("DockerProvider needs environment= (to build its image) or image=")
        if server_args and environment is None:
            raise ValueError("server_args need environment= (the launcher command is built from it)")
        self.environment = environment
        self.env_kwargs = dict(env_kwargs or {})
        self.image = image
        self.rebuild = rebuild
        self.build_args = dict(build_args or {})
        self.server_args = list(server_args or [])
        self.extra_env = dict(env or {})
        self.host = host
        self.container_port = container_port
        self.startup_timeout = startup_timeout
        self.run_options = dict(run_options or {})
        self.direct_socket = direct_socket and "OPENENV_DIRECT_SOCKET" not in self.extra_env and "--direct-socket" not in self.server_args
        self.container: Any = None
        self._direct_folder: str | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    def command(self) -> list[str] | None:
        """The launcher command, or None to run the image's own CMD (an environment folder's image)."""
        if self.environment is None or split_target(self.environment)[1] is not None:
            return None
        flags = ["--host", "0.0.0.0", "--port", str(self.container_port)]
        return ["python3", "-m", "gym_openenv.server", self.environment, *flags, *self.server_args]

    def start(self) -> str:
        with self._lock:
            if self.container is not None:
                return self.base_url
            self._client = self._client or docker_client()
            remove_orphans(self._client)
            if self.image is None:
                dockerfile, context = image_source(self.environment)
                self.image = build_image(dockerfile, context=context, build_args=self.build_args, rebuild=self.rebuild, client=self._client)
                if context is not None and self.container_port == CONTAINER_PORT:
                    self.container_port = manifest_of(context).port  # the port the folder's own CMD serves on
            environment = dict(self.extra_env)
            if self.env_kwargs or self.environment is not None:
                environment["OPENENV_ENV_KWARGS"] = json.dumps(self.env_kwargs)
            if os.environ.get("OPENENV_TOKEN") and "OPENENV_TOKEN" not in environment:
                environment["OPENENV_TOKEN"] = os.environ["OPENENV_TOKEN"]  # the client sends it; the server must expect it
            self.token = environment.get("OPENENV_TOKEN") or None  # the health checks send it too
            labels = {OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}
            options = dict(self.run_options)
            if self.direct_socket:
                self._direct_folder = _make_direct_folder()
                labels[DIRECT_FOLDER_LABEL] = self._direct_folder
                # The same path inside and out: the socket the server advertises is this machine's too.
                environment["OPENENV_DIRECT_SOCKET"] = os.path.join(self._direct_folder, "direct.sock")
                options["volumes"] = _with_bind(options.get("volumes"), self._direct_folder)
            try:
                self.container = self._client.containers.run(
                    self.image,
                    command=self.command(),
                    detach=True,
                    environment=environment,
                    ports={f"{self.container_port}/tcp": (self.host, None)},
                    labels=labels,
                    **options,
                )
            except BaseException:
                self._remove()
                raise
            _LIVE.add(self)
            try:
                self.base_url = f"http://{self.host}:{self._published_port()}"
                self._await_health()
                if self.direct_socket:
                    self._hand_over_direct_socket(environment["OPENENV_DIRECT_SOCKET"])
            except BaseException:
                self._remove()
                raise
            return self.base_url

    def _hand_over_direct_socket(self, path: str) -> None:
        """Make the server's direct socket this user's, as it would be for a local server.

        The server created it (mode 0600) as the container's user: root of a rootful engine,
        which a client that is not root cannot connect to. Under rootless Docker the
        container's root is this user already; a socket that is not there (a server that
        offers none, an engine that maps users so the server could not create it) is left
        alone, as is one the image has no ``chown`` for: clients then use the WebSocket.
        """
        try:
            if os.stat(path).st_uid == os.getuid():
                return
        except FileNotFoundError:
            return
        self.container.exec_run(["chown", f"{os.getuid()}:{os.getgid()}", path], user="root")

    def _published_port(self) -> int:
        deadline = time.monotonic() + 10
        while True:
            self.container.reload()
            bindings = (self.container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{self.container_port}/tcp")
            if bindings:
                return int(bindings[0]["HostPort"])
            if self.container.status == "exited" or time.monotonic() > deadline:
                raise ServerStartError(f"{self._name()}: container published no port ({self.container.status})\n{self.logs()}")
            time.sleep(0.05)

    def _await_health(self) -> None:
        def stopped() -> str | None:
            self.container.reload()
            if self.container.status not in ("exited", "dead"):
                return None
            code = self.container.attrs["State"]["ExitCode"]
            return f"{self._name()}: container exited with code {code}\n{self.logs()}"

        try:
            self.endpoint.wait_healthy(self.startup_timeout, stopped=stopped, max_backoff=0.5)
        except ServerStartError as e:
            if self.container.status in ("exited", "dead"):
                raise  # stopped() said why, with the logs
            raise ServerStartError(f"{self._name()}: {e}\n{self.logs()}") from None

    def _name(self) -> str:
        return self.environment or self.image

    def logs(self, limit: int = 4000) -> str:
        """The tail of the container's output."""
        if self.container is None:
            return ""
        try:
            return self.container.logs(tail=200).decode(errors="replace")[-limit:]
        except docker.errors.APIError:
            return ""

    def stop(self) -> None:
        with self._lock:
            self._remove()

    def _remove(self) -> None:
        container, self.container = self.container, None
        folder, self._direct_folder = self._direct_folder, None
        if container is not None:
            try:
                container.remove(force=True)  # kills it if running
            except docker.errors.NotFound:
                pass
        _remove_direct_folder(folder)
        _LIVE.discard(self)


def _with_bind(volumes: Any, folder: str) -> Any:
    """``docker run``'s ``volumes`` (a dict or a list, as docker-py takes them) plus ``folder``
    mounted at its own path."""
    if isinstance(volumes, dict):
        return {**volumes, folder: {"bind": folder, "mode": "rw"}}
    return [*(volumes or []), f"{folder}:{folder}:rw"]


def from_docker_image(image: str, *, env_kwargs: dict[str, Any] | None = None, **options: Any) -> tuple[str, DockerProvider]:
    """Run ``image`` (its own CMD must serve OpenEnv on port 8000): (base URL, provider to stop).

    OpenEnv's ``EnvClient.from_docker_image`` in provider form::

        url, provider = from_docker_image("gym-openenv/echo:latest")
        env = gym.make("openenv/remote-v0", url=url)
        ...
        env.close(); provider.stop()
    """
    provider = DockerProvider(env_kwargs=env_kwargs, image=image, **options)
    return provider.start(), provider
