"""The ``gym-openenv`` command: scaffold, check, serve, build and benchmark environments.

It works in the user's folder, on OpenEnv environment folders (upstream's or ours)
and on the environments gym_openenv knows by name; it never writes into the
installed package.

::

    gym-openenv init maze_env                   # ./maze_env in OpenEnv's layout
    gym-openenv validate maze_env               # manifest, layout, its own server, check_env
    gym-openenv validate --url http://127.0.0.1:8000   # a running server
    gym-openenv serve maze_env --reload         # its server on :8000 (a folder or a name)
    gym-openenv list                            # every environment and whether it can run here
    gym-openenv bench echo --seconds 5          # steps/s through gym.make_vec
    gym-openenv build maze_env                  # docker image gym-openenv/maze_env:0.1.0
    gym-openenv push maze_env --registry localhost:5000/me

(``openenv`` is openenv-core's command; this one is ``gym-openenv``.)
"""

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gym_openenv import registry
from gym_openenv.errors import UnknownEnvironment
from gym_openenv.manifest import Manifest, ManifestError
from gym_openenv.registry import RegistryEntry
from gym_openenv.validation import CheckReport, missing_requirements, validate_folder, validate_url

__all__ = ["app"]

app = typer.Typer(
    name="gym-openenv",
    help="Scaffold, check, serve, build and benchmark OpenEnv environments for gymnasium.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

KwargsOption = Annotated[str | None, typer.Option("--env-kwargs", help="Environment arguments as a JSON object, e.g. '{\"size\": 5}'.")]
TargetArgument = Annotated[
    str | None, typer.Argument(help="Environment folder, or the name of a known environment (default: the current directory).")
]


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


@dataclass
class Target:
    """The environment a command works on: its registry entry, and its folder's manifest if it has a folder."""

    entry: RegistryEntry
    manifest: Manifest | None

    @property
    def folder(self) -> Path | None:
        return self.entry.server


def _target(spec: str | None) -> Target:
    """``spec`` is an environment folder (default: the current directory) or a known environment's name."""
    path = Path(spec) if spec else Path.cwd()
    try:
        if path.is_dir():
            entry = registry.find_folder(path) or registry.folder_entry(path)
            return Target(entry, registry.manifest_of(entry.server))
        if spec is None or "/" in spec and not spec.startswith("openenv/"):
            _fail(f"{path}: no such environment folder")
        entry = registry.find(spec)
        return Target(entry, registry.manifest_of(entry.server) if entry.server is not None else None)
    except (UnknownEnvironment, ManifestError, ValueError) as e:
        _fail(str(e))


def _print_report(report: CheckReport, title: str, subject: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    colors = {"ok": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}
    for name, status, detail in report.rows:
        table.add_row(name, f"[{colors[status]}]{status}[/]", escape(detail))
    console.print(table)
    if report.failed:
        _fail(f"{subject}: {sum(s == 'FAIL' for _, s, _ in report.rows)} check(s) failed")
    console.print(f"[green]{subject} is valid[/]")


# --- init ----------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Environment name, also its folder and package: lowercase letters, digits, underscores.")],
    description: Annotated[str | None, typer.Option(help="One line for openenv.yaml and the README.")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to create the folder.", file_okay=False)] = Path("."),
) -> None:
    """Create ./NAME, a working environment in OpenEnv's layout (pyproject.toml, openenv.yaml, server/)."""
    from gym_openenv.templates import scaffold

    try:
        written = scaffold(output_dir, name, description)
    except (ValueError, OSError) as e:
        _fail(str(e))
    folder = output_dir / name
    console.print(f"[green]Created[/] {folder}:")
    for path in written:
        console.print(f"  {path}")
    gym_name = registry.normalize_name(name)
    console.print("\nNext:")
    console.print(f"  gym-openenv validate {folder}")
    console.print(f"  gym-openenv serve {folder}")
    console.print(f"  python -m pytest {folder}/tests")
    console.print(f"  python -c 'import gymnasium as gym, gym_openenv; print(gym.make(gym_openenv.register_folder(\"{folder}\")).reset())'")
    console.print(f"  pip install -e {folder}   # then gym.make(\"openenv/{gym_name}-v0\") anywhere")


# --- validate ------------------------------------------------------------------


@app.command()
def validate(
    path: Annotated[Path | None, typer.Argument(help="Environment folder (default: the current directory).", file_okay=False)] = None,
    url: Annotated[str | None, typer.Option(help="Check the OpenEnv server running at this URL instead of a folder.")] = None,
    env_kwargs: KwargsOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to start (and, with --url, for each request).")] = 120.0,
    token: Annotated[str | None, typer.Option(envvar="OPENENV_TOKEN", help="Bearer token for --url.")] = None,
) -> None:
    """Check an environment folder (manifest, layout, its own server, gymnasium's check_env) or, with --url, a running server."""
    if url is not None:
        if path is not None:
            _fail("pass a folder or --url, not both")
        _print_report(validate_url(url, token, timeout), f"gym-openenv validate --url {url}", url)
        return
    folder = (path or Path.cwd()).resolve()
    if not folder.is_dir():
        _fail(f"{folder}: no such environment folder")
    _print_report(validate_folder(folder, _json_kwargs(env_kwargs), timeout), f"gym-openenv validate {folder}", folder.name)


# --- serve ---------------------------------------------------------------------


def _serve_kwargs(target: Target, env_kwargs: str | None) -> dict[str, Any]:
    """The registry's defaults, then ``$OPENENV_ENV_KWARGS`` (as images pass them), then the command line's."""
    from_environ = os.environ.get("OPENENV_ENV_KWARGS")
    return {**target.entry.kwargs, **_json_kwargs(from_environ), **_json_kwargs(env_kwargs)}


@app.command()
def serve(
    target: TargetArgument = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (printed as OPENENV_LISTENING <url>).")] = 8000,
    reload: Annotated[bool, typer.Option("--reload", help="Restart when the folder's files change (uvicorn).")] = False,
    web: Annotated[bool, typer.Option("--web", help="Serve the /web page to play and debug the environment in a browser.")] = False,
    env_kwargs: KwargsOption = None,
) -> None:
    """Run an environment's server in the foreground: a folder's own app, or a known environment."""
    found = _target(target)
    entry = found.entry
    kwargs = _serve_kwargs(found, env_kwargs)
    if reload:
        if found.folder is None or found.manifest is None:
            _fail(f"--reload needs an environment folder; {entry.name} has none")
        # uvicorn re-imports the app on change, from the folder (and its parent) as OpenEnv runs it.
        os.environ["OPENENV_ENV_KWARGS"] = json.dumps(kwargs)
        parent = str(found.folder.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(found.folder), parent, os.environ.get("PYTHONPATH")) if p)
        os.chdir(found.folder)
        command = [sys.executable, "-m", "uvicorn", found.manifest.app, "--reload", "--reload-dir", str(found.folder)]
        command += ["--host", host, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "gym_openenv.server", entry.environment, "--host", host, "--port", str(port)]
        command += ["--env-kwargs", json.dumps(kwargs), "--log-level", "info"]
    errors.print(f"serving {entry.id} ({entry.environment}) on {host}:{port}{' with reload' if reload else ''}")
    if web:
        os.environ["OPENENV_WEB"] = "1"  # our servers' settings read it, with or without --reload
        login = "?token=$OPENENV_TOKEN" if os.environ.get("OPENENV_TOKEN") else ""
        errors.print(f"web page: http://{host}:{port}/web{login}" if port else f"web page: /web{login} at the URL printed below")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


# --- list ----------------------------------------------------------------------


def _status(entry: RegistryEntry) -> tuple[bool, str]:
    """(can it run here, why not) for one environment."""
    from gym_openenv.manifest import import_object

    try:
        manifest = entry.manifest()
    except ManifestError as e:
        return False, str(e)
    if manifest is not None:
        missing = missing_requirements(manifest.requirements())
        if missing:
            return False, f"missing dependencies: {', '.join(missing)}"
    if entry.serves_folder_app:
        return True, "ok (its own app; imported by its server)"
    try:
        import_object(entry.environment)
    except Exception as e:  # whatever the import raises is what the user must fix
        return False, f"import failed: {type(e).__name__}: {e}"
    return True, "ok"


@app.command("list")
def list_environments(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Every known environment (registry, installed packages), and whether it can run here."""
    rows = []
    for entry in sorted(registry.environments().values(), key=lambda e: e.name):
        ok, status = _status(entry)
        rows.append(
            {"name": entry.name, "id": entry.id, "source": entry.source, "ok": ok, "status": status, "description": entry.description}
        )
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
    target: Annotated[str, typer.Argument(help="Environment name (echo, openenv/atari-v0) or folder.")],
    num_envs: Annotated[int, typer.Option(min=1, help="Sessions in the vector env.")] = 4,
    seconds: Annotated[float, typer.Option(min=0.1, help="How long to step.")] = 5.0,
    num_servers: Annotated[int | None, typer.Option(min=1, help="Server processes (default: one per core).")] = None,
    seed: int = 0,
    env_kwargs: KwargsOption = None,
) -> None:
    """Steps per second with random actions through gym.make_vec."""
    import gymnasium as gym

    entry = _target(target).entry
    env_id = registry.register(entry) if entry.source == "folder" else entry.register()
    kwargs = _json_kwargs(env_kwargs)
    if num_servers is not None:
        kwargs["num_servers"] = num_servers
    started = time.perf_counter()
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    except Exception as e:  # server start and argument errors, reported with their message
        _fail(f"{env_id}: cannot start: {type(e).__name__}: {e}")
    try:
        startup = time.perf_counter() - started
        envs.action_space.seed(seed)
        # Sampled before the clock starts: sampling (a long random Text, say) is not stepping.
        actions = [envs.action_space.sample() for _ in range(ACTION_POOL)]
        envs.reset(seed=seed)
        steps = 0
        columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]} steps/s"), TimeRemainingColumn()]
        with Progress(*columns, console=errors, transient=True) as progress:
            task = progress.add_task(f"{env_id} x{num_envs}", total=seconds, rate="-")
            begin = time.perf_counter()
            while (elapsed := time.perf_counter() - begin) < seconds:
                envs.step(actions[(steps // num_envs) % ACTION_POOL])
                steps += num_envs
                progress.update(task, completed=elapsed, rate=f"{steps / max(elapsed, 1e-9):,.0f}")
            elapsed = time.perf_counter() - begin
    finally:
        envs.close()
    console.print(
        f"{env_id}: {steps} steps in {elapsed:.2f}s = [bold]{steps / elapsed:,.0f} steps/s[/] "
        f"({num_envs} envs, {ACTION_POOL} pre-sampled random action batches, server startup {startup:.1f}s)"
    )


# --- build / push --------------------------------------------------------------


def _image_name(target: Target) -> str:
    name = target.manifest.name if target.manifest is not None else target.entry.name
    return f"gym-openenv/{name}:{(target.manifest.version if target.manifest is not None else None) or 'latest'}"


def _docker_client() -> Any:
    try:
        from gym_openenv.providers.docker import docker_client
    except ImportError:
        _fail("the docker extra is not installed: pip install 'gym-openenv[docker]'")
    from gym_openenv.errors import ServerStartError

    try:
        return docker_client()
    except ServerStartError as e:
        _fail(f"the docker daemon is not reachable: {e}")


def _build_args(base_image: str | None, pip_args: str | None, build_arg: list[str] | None) -> dict[str, str]:
    args = {"BASE_IMAGE": base_image} if base_image else {}
    if pip_args is not None:
        args["PIP_ARGS"] = pip_args
    for arg in build_arg or []:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            _fail(f"--build-arg must be KEY=VALUE, got {arg!r}")
        args[key] = value
    return args


@app.command()
def build(
    target: TargetArgument = None,
    tag: Annotated[str | None, typer.Option(help="Image tag (default: gym-openenv/NAME:VERSION).")] = None,
    base_image: Annotated[
        str | None, typer.Option(envvar="OPENENV_DOCKER_BASE_IMAGE", help="--build-arg BASE_IMAGE: any image with Python >= 3.10 and pip.")
    ] = None,
    pip_args: Annotated[
        str | None, typer.Option(envvar="OPENENV_DOCKER_PIP_ARGS", help="--build-arg PIP_ARGS, e.g. '--no-index --find-links /app/.docker-wheels'.")
    ] = None,
    wheels: Annotated[
        Path | None,
        typer.Option(
            envvar="OPENENV_DOCKER_WHEELS",
            file_okay=False,
            exists=True,
            help="Offline builds: a wheel directory, placed in the context as .docker-wheels/ "
            "(PIP_ARGS defaults to '--no-index --find-links /app/.docker-wheels').",
        ),
    ] = None,
    build_arg: Annotated[list[str] | None, typer.Option(help="More KEY=VALUE build arguments (repeatable).")] = None,
) -> None:
    """docker build an environment's image: a folder's own Dockerfile (context: the folder), or a known environment's."""
    found = _target(target)
    args = _build_args(base_image, pip_args, build_arg)
    client = _docker_client()
    from gym_openenv.errors import ServerStartError
    from gym_openenv.providers.docker import build_image, image_source

    image = tag or _image_name(found)
    try:
        dockerfile, context = image_source(found.entry.environment)
        errors.print(f"building {image} from {dockerfile} (context: {context or 'the gym_openenv repository'})")
        build_image(dockerfile, context=context, tag=image, build_args=args, wheel_dir=str(wheels) if wheels else "", rebuild=True, client=client)
    except (ServerStartError, ValueError) as e:
        _fail(str(e))
    console.print(f"[green]built[/] {image}")


@app.command()
def push(
    registry_: Annotated[str, typer.Option("--registry", help="Where to push: HOST[:PORT]/NAMESPACE.")],
    target: TargetArgument = None,
    tag: Annotated[str | None, typer.Option(help="Local image to push (default: gym-openenv/NAME:VERSION, as build tags it).")] = None,
) -> None:
    """Tag the built image as REGISTRY/NAME:VERSION and docker push it."""
    found = _target(target)
    if "/" not in registry_.strip("/"):
        _fail(f"--registry must be HOST[:PORT]/NAMESPACE, got {registry_!r}")
    import docker

    client = _docker_client()
    image = tag or _image_name(found)
    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        _fail(f"no local image {image}; run gym-openenv build first")
    repository = f"{registry_.strip('/')}/{_image_name(found).removeprefix('gym-openenv/').partition(':')[0]}"
    version = _image_name(found).partition(":")[2]
    local.tag(repository, version)
    errors.print(f"pushing {repository}:{version}")
    for line in client.images.push(repository, version, stream=True, decode=True):
        if "error" in line:
            _fail(f"push of {repository}:{version} failed: {line['error']}")
    console.print(f"[green]pushed[/] {repository}:{version}")


if __name__ == "__main__":
    app()
