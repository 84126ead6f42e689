"""The ``gym-openenv`` command: scaffold, check, serve, build and benchmark servers.

::

    gym-openenv init maze                 # gym_openenv/servers/maze/ + registry entry + test
    gym-openenv validate gym_openenv/servers/maze     # manifest, models, live /schema, check_env
    gym-openenv serve maze --reload       # run it on :8000
    gym-openenv list                      # every environment and whether it can run here
    gym-openenv bench echo --seconds 5    # steps/s through gym.make_vec
    gym-openenv build gym_openenv/servers/maze        # docker image gym-openenv/maze:0.1.0
    gym-openenv push gym_openenv/servers/maze --registry localhost:5000/me

(``openenv`` is openenv-core's command; this one is ``gym-openenv``.)
"""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gym_openenv import registry
from gym_openenv.auto import EnvironmentInfo, discover, find_environment
from gym_openenv.errors import UnknownEnvironment
from gym_openenv.manifest import MANIFEST_FILE, Manifest, ManifestError, import_object, load_manifest
from gym_openenv.validation import missing_requirements, validate_folder

__all__ = ["app"]

app = typer.Typer(
    name="gym-openenv",
    help="Scaffold, check, serve, build and benchmark gym_openenv environment servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        envvar="GYM_OPENENV_ROOT",
        help="Repository root: registry.yaml beside gym_openenv/servers/ (default: the one gym_openenv registers from).",
        file_okay=False,
    ),
]
KwargsOption = Annotated[str | None, typer.Option("--env-kwargs", help="Environment arguments as a JSON object, e.g. '{\"size\": 5}'.")]


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def _json_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        _fail(f"--env-kwargs is not JSON ({e}): {text!r}")
    if not isinstance(value, dict):
        _fail(f"--env-kwargs must be a JSON object such as '{{\"size\": 5}}', got {text!r}")
    return value


def _use_root(root: Path | None) -> Path:
    """The repository root, importable here and in the servers this process starts."""
    root = (root or registry.REGISTRY_PATH.parent).resolve()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    return root


def _known(root: Path) -> dict[str, EnvironmentInfo]:
    try:
        return discover(root / "registry.yaml")
    except (OSError, ValueError) as e:
        _fail(f"{root / 'registry.yaml'}: {e}")


def _find(name: str, root: Path) -> EnvironmentInfo:
    try:
        return find_environment(name, root / "registry.yaml")
    except UnknownEnvironment as e:
        _fail(str(e))


@dataclass
class Target:
    """A server folder (or an entry-point environment) a command works on."""

    name: str
    environment: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    manifest: Manifest | None = None


def _target(spec: str | None, root: Path) -> Target:
    """``spec`` is a server folder (default: the current directory) or an environment name."""
    path = Path(spec) if spec else Path.cwd()
    if path.is_dir():
        folder = path.resolve()
        try:
            manifest = load_manifest(folder)
        except ManifestError as e:
            _fail(str(e))
        info = _registered(folder, root)
        if info is not None:
            return Target(info.name, info.environment, dict(info.kwargs), folder, manifest)
        # Not registered: the app module knows which Environment it serves.
        try:
            env_cls = import_object(manifest.app).state.host.env_cls
        except Exception as e:  # any import-time failure of user code is reported, not raised
            _fail(f"{folder.name}: cannot import app {manifest.app}: {type(e).__name__}: {e}")
        return Target(manifest.name, f"{env_cls.__module__}:{env_cls.__qualname__}", {}, folder, manifest)
    if "/" in spec and not spec.startswith("openenv/"):
        _fail(f"{spec}: no such server folder")
    info = _find(spec, root)
    manifest = info.manifest() if info.server is not None and (info.server / MANIFEST_FILE).exists() else None
    return Target(info.name, info.environment, dict(info.kwargs), info.server, manifest)


# --- init ----------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Environment name: lowercase letters, digits, underscores.")],
    description: Annotated[str | None, typer.Option(help="One line for openenv.yaml, the registry and the README.")] = None,
    root: RootOption = None,
) -> None:
    """Scaffold gym_openenv/servers/NAME/ (OpenEnv's layout) and register it as openenv/NAME-v0."""
    from gym_openenv.templates import scaffold

    root = (root or registry.REGISTRY_PATH.parent).resolve()
    try:
        written = scaffold(root, name, description)
    except (ValueError, OSError) as e:
        _fail(str(e))
    console.print(f"[green]Created[/] {registry.gym_id(name)} in {root}:")
    for path in written:
        console.print(f"  {path}")
    console.print(f"  registry.yaml (entry '{name}' appended)")
    console.print("\nNext:")
    console.print(f"  gym-openenv validate {root / 'servers' / name}")
    console.print(f"  gym-openenv serve {name}")
    console.print(f"  python -c 'import gymnasium as gym, gym_openenv; print(gym.make(\"{registry.gym_id(name)}\").reset())'")
    if root / "registry.yaml" != registry.REGISTRY_PATH:
        console.print(
            f"\n[yellow]note:[/] gym.make reads {registry.REGISTRY_PATH}; this entry is in {root / 'registry.yaml'}. "
            "gym-openenv commands take --root (or GYM_OPENENV_ROOT) to use it."
        )


# --- validate ------------------------------------------------------------------


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(help="Server folder (default: the current directory).", file_okay=False)] = None,
    env_kwargs: KwargsOption = None,
    root: RootOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to start.")] = 120.0,
) -> None:
    """Check a server folder: manifest, models, live /schema, spaces, gymnasium's check_env."""
    root = _use_root(root)
    folder = (path or Path.cwd()).resolve()
    entry = _registered(folder, root)
    # The registry's default kwargs for this folder, then the command line's.
    kwargs = {**(entry.kwargs if entry is not None else {}), **_json_kwargs(env_kwargs)}
    report = validate_folder(folder, kwargs, timeout)

    table = Table(title=f"gym-openenv validate {folder}", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    colors = {"ok": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}
    for name, status, detail in report.rows:
        table.add_row(name, f"[{colors[status]}]{status}[/]", escape(detail))
    console.print(table)
    if report.failed:
        _fail(f"{folder.name}: {sum(s == 'FAIL' for _, s, _ in report.rows)} check(s) failed")
    console.print(f"[green]{folder.name} is valid[/]")


def _registered(folder: Path, root: Path) -> EnvironmentInfo | None:
    """The registry entry served from ``folder``, if there is one."""
    for info in _known(root).values():
        if info.server is not None and info.server.resolve() == folder:
            return info
    return None


# --- serve ---------------------------------------------------------------------


@app.command()
def serve(
    target: Annotated[str | None, typer.Argument(help="Server folder or environment name (default: the current directory).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 8000,
    reload: Annotated[bool, typer.Option("--reload", help="Restart when the server folder's files change (uvicorn).")] = False,
    web: Annotated[bool, typer.Option("--web", help="Serve the /web page to play and debug the environment in a browser.")] = False,
    env_kwargs: KwargsOption = None,
    root: RootOption = None,
) -> None:
    """Run an environment server in the foreground (python -m gym_openenv.server)."""
    root = _use_root(root)
    found = _target(target, root)
    kwargs = {**found.kwargs, **_json_kwargs(env_kwargs)}
    if reload:
        if found.manifest is None or found.folder is None:
            _fail(f"--reload needs a server folder with {MANIFEST_FILE}; {found.name} has none")
        # uvicorn re-imports the app on change; the app reads its kwargs from the environment.
        os.environ["OPENENV_ENV_KWARGS"] = json.dumps(kwargs)
        command = [sys.executable, "-m", "uvicorn", found.manifest.app, "--reload", "--reload-dir", str(found.folder)]
        command += ["--app-dir", str(root), "--host", host, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "gym_openenv.server", found.environment, "--host", host, "--port", str(port)]
        command += ["--env-kwargs", json.dumps(kwargs), "--log-level", "info"]
    if web:
        os.environ["OPENENV_WEB"] = "1"  # read by the server's settings, with or without --reload
    errors.print(f"serving {found.name} ({found.environment}) on {host}:{port}{' with reload' if reload else ''}")
    if web:
        errors.print(f"web page: http://{host}:{port}/web{'?token=$OPENENV_TOKEN' if os.environ.get('OPENENV_TOKEN') else ''}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


# --- list ----------------------------------------------------------------------


def _status(info: EnvironmentInfo) -> tuple[bool, str]:
    """(can it run here, why not) for one environment."""
    if info.server is not None:
        try:
            manifest = info.manifest()
        except ManifestError as e:
            return False, str(e)
        missing = missing_requirements(manifest)
        if missing:
            return False, f"missing dependencies: {', '.join(missing)}"
    try:
        info.environment_class()
    except Exception as e:  # whatever the import raises is what the user must fix
        return False, f"import failed: {type(e).__name__}: {e}"
    return True, "ok"


@app.command("list")
def list_environments(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    root: RootOption = None,
) -> None:
    """Every registered environment, and whether it can run here (imports, dependencies)."""
    root = _use_root(root)
    rows = []
    for info in sorted(_known(root).values(), key=lambda i: i.name):
        ok, status = _status(info)
        rows.append({"name": info.name, "id": info.id, "source": info.source, "ok": ok, "status": status, "description": info.description})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} environments", title_justify="left")
    for column in ("name", "id", "source"):
        table.add_column(column, no_wrap=True)
    for column in ("status", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = f"[green]{row['status']}[/]" if row["ok"] else f"[red]{escape(row['status'])}[/]"
        table.add_row(row["name"], row["id"], row["source"], status, escape(row["description"]))
    console.print(table)


# --- bench ---------------------------------------------------------------------

ACTION_POOL = 64


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="Environment name, e.g. echo or openenv/atari-v0.")],
    num_envs: Annotated[int, typer.Option(min=1, help="Sessions in the vector env.")] = 4,
    seconds: Annotated[float, typer.Option(min=0.1, help="How long to step.")] = 5.0,
    num_servers: Annotated[int | None, typer.Option(min=1, help="Server processes (default: one per core).")] = None,
    seed: int = 0,
    env_kwargs: KwargsOption = None,
    root: RootOption = None,
) -> None:
    """Steps per second with random actions through gym.make_vec."""
    import gymnasium as gym

    root = _use_root(root)
    info = _find(name, root)
    info.register()
    kwargs = _json_kwargs(env_kwargs)
    if num_servers is not None:
        kwargs["num_servers"] = num_servers
    started = time.perf_counter()
    try:
        envs = gym.make_vec(info.id, num_envs=num_envs, **kwargs)
    except Exception as e:  # server start and argument errors, reported with their message
        _fail(f"{info.id}: cannot start: {type(e).__name__}: {e}")
    try:
        startup = time.perf_counter() - started
        envs.action_space.seed(seed)
        # Sampled before the clock starts: sampling (a long random Text, say) is not stepping.
        actions = [envs.action_space.sample() for _ in range(ACTION_POOL)]
        envs.reset(seed=seed)
        steps = 0
        columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]} steps/s"), TimeRemainingColumn()]
        with Progress(*columns, console=errors, transient=True) as progress:
            task = progress.add_task(f"{info.id} x{num_envs}", total=seconds, rate="-")
            begin = time.perf_counter()
            while (elapsed := time.perf_counter() - begin) < seconds:
                envs.step(actions[(steps // num_envs) % ACTION_POOL])
                steps += num_envs
                progress.update(task, completed=elapsed, rate=f"{steps / max(elapsed, 1e-9):,.0f}")
            elapsed = time.perf_counter() - begin
    finally:
        envs.close()
    console.print(
        f"{info.id}: {steps} steps in {elapsed:.2f}s = [bold]{steps / elapsed:,.0f} steps/s[/] "
        f"({num_envs} envs, {ACTION_POOL} pre-sampled random action batches, server startup {startup:.1f}s)"
    )


# --- build / push --------------------------------------------------------------


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        _fail("docker is not installed (apt-get install -y docker.io)")
    probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        _fail(f"the docker daemon is not reachable ({reason}); start dockerd (scripts/docker-setup.sh does) or set DOCKER_HOST")
    return docker


def _image(manifest: Manifest) -> str:
    return f"gym-openenv/{manifest.name}:{manifest.version}"


def _server_folder(path: Path | None) -> tuple[Path, Manifest]:
    folder = (path or Path.cwd()).resolve()
    try:
        return folder, load_manifest(folder)
    except ManifestError as e:
        _fail(str(e))


WHEELS_IN_CONTEXT = ".docker-wheels"


@app.command()
def build(
    path: Annotated[Path | None, typer.Argument(help="Server folder (default: the current directory).", file_okay=False)] = None,
    tag: Annotated[str | None, typer.Option(help="Image tag (default: gym-openenv/NAME:VERSION).")] = None,
    base_image: Annotated[
        str | None, typer.Option(envvar="OPENENV_DOCKER_BASE_IMAGE", help="--build-arg BASE_IMAGE: any image with Python >= 3.10 and pip.")
    ] = None,
    pip_args: Annotated[
        str | None, typer.Option(envvar="OPENENV_DOCKER_PIP_ARGS", help="--build-arg PIP_ARGS, e.g. '--no-index --find-links /app/wheels'.")
    ] = None,
    wheels: Annotated[
        Path | None,
        typer.Option(
            envvar="OPENENV_DOCKER_WHEELS",
            file_okay=False,
            exists=True,
            help=f"Offline builds: a wheel directory, placed in the context as {WHEELS_IN_CONTEXT}/ for the build "
            f"(PIP_ARGS defaults to '--no-index --find-links /app/{WHEELS_IN_CONTEXT}').",
        ),
    ] = None,
    build_arg: Annotated[list[str] | None, typer.Option(help="More KEY=VALUE build arguments (repeatable).")] = None,
    root: RootOption = None,
) -> None:
    """docker build the server image (context: the repository root)."""
    root = (root or registry.REGISTRY_PATH.parent).resolve()
    folder, manifest = _server_folder(path)
    dockerfile = folder / manifest.server.dockerfile
    if not dockerfile.is_file():
        _fail(f"{folder / MANIFEST_FILE}: server.dockerfile {manifest.server.dockerfile!r} does not exist")
    if not dockerfile.resolve().is_relative_to(root):
        _fail(f"{dockerfile} is outside the build context {root}; pass --root")
    if wheels is not None and pip_args is None:
        pip_args = f"--no-index --find-links /app/{WHEELS_IN_CONTEXT}"
    args = [f"BASE_IMAGE={base_image}"] if base_image else []
    args += [f"PIP_ARGS={pip_args}"] if pip_args is not None else []
    for arg in build_arg or []:
        if "=" not in arg:
            _fail(f"--build-arg must be KEY=VALUE, got {arg!r}")
        args.append(arg)
    image = tag or _image(manifest)
    command = [_docker(), "build", "--force-rm", "-f", str(dockerfile), "-t", image]
    for arg in args:
        command += ["--build-arg", arg]
    command.append(str(root))
    staged = _stage_wheels(wheels, root) if wheels is not None else None
    try:
        errors.print(f"$ {' '.join(command)}")
        if subprocess.run(command, check=False).returncode != 0:
            _fail(f"docker build of {image} failed (output above)")
    finally:
        if staged is not None:
            shutil.rmtree(staged)
    console.print(f"[green]built[/] {image}")


def _stage_wheels(wheels: Path, root: Path) -> Path:
    """Link (or copy) the wheels into the build context for the length of the build."""
    staged = root / WHEELS_IN_CONTEXT
    if staged.exists():
        _fail(f"{staged} exists (another build running, or left over); remove it and retry")
    staged.mkdir()
    for wheel in wheels.glob("*.whl"):
        try:
            os.link(wheel, staged / wheel.name)
        except OSError:  # another filesystem: copy instead
            shutil.copy2(wheel, staged / wheel.name)
    return staged


@app.command()
def push(
    registry_: Annotated[str, typer.Option("--registry", help="Where to push: HOST[:PORT]/NAMESPACE.")],
    path: Annotated[Path | None, typer.Argument(help="Server folder (default: the current directory).", file_okay=False)] = None,
    tag: Annotated[str | None, typer.Option(help="Local image to push (default: gym-openenv/NAME:VERSION, as build tags it).")] = None,
) -> None:
    """Tag the built image as REGISTRY/NAME:VERSION and docker push it."""
    _, manifest = _server_folder(path)
    if "/" not in registry_.strip("/"):
        _fail(f"--registry must be HOST[:PORT]/NAMESPACE, got {registry_!r}")
    docker = _docker()
    image = tag or _image(manifest)
    if subprocess.run([docker, "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        _fail(f"no local image {image}; run gym-openenv build first")
    remote = f"{registry_.strip('/')}/{manifest.name}:{manifest.version}"
    for command in ([docker, "tag", image, remote], [docker, "push", remote]):
        errors.print(f"$ {' '.join(command)}")
        if subprocess.run(command, check=False).returncode != 0:
            _fail(f"{' '.join(command[1:3])} failed (output above)")
    console.print(f"[green]pushed[/] {remote}")


if __name__ == "__main__":
    app()
