"""The ``gym-openenv`` command, run as a real process in the user's folder.

``init`` runs against a copy of the installed package (first on PYTHONPATH), in an empty
project folder, and the copy is hashed before and after: the command writes ``./NAME``
and nothing else. ``validate``, ``serve`` and ``build`` run on that scaffold and on
tests/fixtures/walker_env, a folder in upstream OpenEnv's exact layout.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from gym_openenv.registry import load_registry
from tests.fixtures import WALKER, docker_exports, wheel_dir_with

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gym_openenv"
CLI = [sys.executable, "-m", "gym_openenv.cli"]
BASE_ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run(args, *, env=None, cwd=None, timeout=300):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env or BASE_ENV, cwd=cwd, timeout=timeout, check=False)


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + (path.read_bytes() if path.is_file() else b"dir"))
    return digest.hexdigest()


def rows(stdout: str) -> dict[str, str]:
    """The validate table: check name -> its line."""
    return {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.count("│") >= 4}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A copy of the installed package, imported instead of the checkout (PYTHONPATH first)."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(PACKAGE, site / "gym_openenv", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**BASE_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run(
        [sys.executable, "-c", "import gym_openenv; print(gym_openenv.__file__)"], env=env, cwd=site, capture_output=True, text=True, check=True
    )
    assert probe.stdout.strip() == str(site / "gym_openenv" / "__init__.py")
    return site, env


@pytest.fixture(scope="module")
def project(installed, tmp_path_factory):
    """``gym-openenv init my_env`` in an empty project folder; the package copy hashed before and after."""
    site, env = installed
    cwd = tmp_path_factory.mktemp("project")
    before = tree_hash(site)
    result = run(["init", "my_env", "--description", "Walk: find the goal"], env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert tree_hash(site) == before, "init wrote into the installed package"
    assert sorted(p.name for p in cwd.iterdir()) == ["my_env"]
    return cwd, env, result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "server exited"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy")


def stop(process: subprocess.Popen) -> None:
    # The server runs in its own session (process group): take the group, children included.
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_on_free_port(args, *, env, cwd) -> tuple[subprocess.Popen, str]:
    """``gym-openenv serve ... --port 0``: the server reports its URL (OPENENV_LISTENING <url>)."""
    server = subprocess.Popen(
        CLI + ["serve", *args, "--port", "0"], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    line = server.stdout.readline()
    if not line.startswith("OPENENV_LISTENING "):
        stop(server)
        pytest.fail(line + server.stderr.read())
    url = line.split()[1]
    wait_healthy(url, server)
    return server, url


# --- the entry point -------------------------------------------------------------


def test_console_script_lists_every_command():
    script = shutil.which("gym-openenv")
    assert script is not None, "pip install -e . installs the gym-openenv console script"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, env=BASE_ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for command in ("init", "validate", "serve", "list", "bench", "build", "push"):
        assert f" {command} " in result.stdout


def test_unknown_command_fails_with_usage():
    result = run(["frobnicate"])
    assert result.returncode == 2 and "No such command 'frobnicate'" in result.stderr


# --- init -> validate -> serve -> gym.make, in the user's folder ----------------------


def test_init_writes_openenv_layout_in_the_current_folder(project):
    cwd, _, stdout = project
    folder = cwd / "my_env"
    for relative in (
        "__init__.py",
        "models.py",
        "client.py",
        "openenv.yaml",
        "pyproject.toml",
        "README.md",
        "server/__init__.py",
        "server/my_env_environment.py",
        "server/app.py",
        "server/Dockerfile",
        "tests/test_my_env.py",
    ):
        assert (folder / relative).is_file(), relative
    import tomllib

    import yaml

    manifest = yaml.safe_load((folder / "openenv.yaml").read_text())
    assert {k: manifest[k] for k in ("spec_version", "name", "type", "runtime", "app", "port")} == {
        "spec_version": 1,
        "name": "my_env",
        "type": "space",
        "runtime": "fastapi",
        "app": "server.app:app",
        "port": 8000,
    }
    assert manifest["description"] == "Walk: find the goal"
    project_table = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project_table["project"]["scripts"]["server"] == "my_env.server.app:main"
    assert project_table["project"]["entry-points"]["gym_openenv.environments"] == {"my_env": "my_env"}
    assert "gym-openenv validate my_env" in stdout and 'openenv/my-v0' in stdout


def test_init_scaffold_validates(project):
    cwd, env, _ = project
    result = run(["validate", "my_env"], env=env, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "my_env is valid" in result.stdout
    table = rows(result.stdout)
    assert "ok" in table["gymnasium check_env"] and "Discrete(8)" in table["spaces derive"]
    assert "openenv-my_env" in table["pyproject.toml"]


def test_init_scaffold_test_passes(project):
    cwd, env, _ = project
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "my_env/tests"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_init_scaffold_serves_to_gym_make(project):
    cwd, env, _ = project
    server, url = serve_on_free_port(["my_env", "--env-kwargs", '{"size": 5}'], env=env, cwd=cwd)
    try:
        script = f"""
import gymnasium as gym, gym_openenv
served = gym.make("openenv/remote-v0", url="{url}")
assert served.observation_space == gym.spaces.Discrete(5), served.observation_space
obs, info = served.reset(seed=0)
obs, reward, terminated, truncated, info = served.step(2)
assert "distance" in info
served.close()
print("stepped", served.observation_space)
"""
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert "stepped Discrete(5)" in result.stdout
        assert httpx.get(url + "/metadata", timeout=10).json()["description"] == "Walk: find the goal"  # from openenv.yaml
    finally:
        stop(server)


@pytest.mark.parametrize(
    "name, message",
    [
        ("Grid-World", "must be lowercase letters, digits and underscores, starting with a letter (e.g. 'grid_world')"),
        ("my_env", "exists and is not empty"),
        ("_env", "must be lowercase letters"),
    ],
)
def test_init_refuses_bad_or_taken_names(project, name, message):
    cwd, env, _ = project
    before = tree_hash(cwd)
    result = run(["init", name], env=env, cwd=cwd)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split()), result.stderr
    assert tree_hash(cwd) == before


def test_serve_reload_restarts_on_change(project):
    cwd, env, _ = project
    assert run(["init", "reload_env"], env=env, cwd=cwd).returncode == 0
    models = cwd / "reload_env" / "models.py"
    port = free_port()
    log = (cwd / "reload.log").open("w")
    server = subprocess.Popen(
        CLI + ["serve", "reload_env", "--port", str(port), "--reload"], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        assert httpx.get(url + "/schema", timeout=10).json()["action"]["properties"]["move"]["x-gym-space"]["n"] == 3
        models.write_text(models.read_text().replace("Discrete(3)", "Discrete(4)"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/schema", timeout=2).json()["action"]["properties"]["move"]["x-gym-space"]["n"] == 4:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server did not reload the changed models:\n" + (cwd / "reload.log").read_text())
    finally:
        stop(server)
        log.close()


def test_serve_unknown_name_suggests():
    result = run(["serve", "ecoh"])
    assert result.returncode == 1
    assert "no environment named 'ecoh'. Did you mean echo?" in result.stderr


def test_serve_folder_without_an_app(tmp_path):
    result = run(["serve", str(tmp_path)])
    assert result.returncode == 1 and "has no module server/app.py" in " ".join(result.stderr.split())


# --- upstream's layout: tests/fixtures/walker_env (openenv-core) -----------------------


def test_validate_an_upstream_folder(tmp_path):
    copy = tmp_path / "walker_env"
    shutil.copytree(WALKER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    result = run(["validate"], cwd=copy)  # PATH defaults to the current directory
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert "openenv/walker-v0" in table["layout"] and "openenv-walker-env" in table["pyproject.toml"]
    assert "no models declared" in table["models import"]
    assert "ok" in table["gymnasium check_env"] and "Discrete(3)" in table["spaces derive"]


def test_serve_an_upstream_folder_by_path(tmp_path):
    server, url = serve_on_free_port([str(WALKER)], env=BASE_ENV, cwd=tmp_path)
    try:
        schema = httpx.get(url + "/schema", timeout=10).json()
        assert schema["action"]["title"] == "WalkerAction"  # openenv-core's schema, its own app
        result = run(["validate", "--url", url])
        assert result.returncode == 0, result.stdout + result.stderr
        assert {"GET /health", "GET /metadata", "GET /schema", "spaces derive", "POST /mcp", "gymnasium check_env"} <= set(rows(result.stdout))
    finally:
        stop(server)


def test_validate_url_of_our_server(echo_server):
    result = run(["validate", "--url", echo_server])
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert "healthy" in table["GET /health"] and "echo" in table["GET /metadata"] and "passed" in table["gymnasium check_env"]


def test_validate_url_lists_the_tools_of_an_mcp_server():
    from gym_openenv.providers import LocalProcessProvider
    from gym_openenv.registry import find

    with LocalProcessProvider(find("calculator").environment) as server:
        result = run(["validate", "--url", server.base_url])
    assert result.returncode == 0, result.stdout + result.stderr
    detail = " ".join(rows(result.stdout)["POST /mcp"].split())
    assert "tools:" in detail and "add" in detail, detail


def test_validate_url_of_nothing():
    result = run(["validate", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "5"])
    assert result.returncode == 1
    table = rows(result.stdout)
    assert "FAIL" in table["GET /health"] and "SKIP" in table["gymnasium check_env"]


# --- validate failures ------------------------------------------------------------


def _broken_scaffold(cwd: Path, env: dict, name: str, edit) -> Path:
    """A fresh scaffold (its modules import as ``<name>.*``), then one edit."""
    assert run(["init", name], env=env, cwd=cwd).returncode == 0
    edit(cwd / name)
    return cwd / name


def _replace(relative: str, old: str, new: str):
    """An edit: ``{name}``/``{Class}`` in the arguments are the scaffold's name and class prefix."""

    def edit(folder: Path) -> None:
        values = {"name": folder.name, "Class": "".join(part.capitalize() for part in folder.name.split("_"))}
        path = folder / relative.format(**values)
        text = path.read_text()
        assert old.format(**values) in text
        path.write_text(text.replace(old.format(**values), new.format(**values)))

    return edit


@pytest.mark.parametrize(
    "name, edit, failing, message",
    [
        ("no_action", _replace("openenv.yaml", "{name}.models:{Class}Action", "{name}.models:NoSuchAction"), "models import", "has no attribute 'NoSuchAction'"),
        (
            "needs_dep",
            _replace("pyproject.toml", '"gym-openenv",', '"gym-openenv", "surely-not-installed-package>=1",'),
            "dependencies installed",
            "surely-not-installed-package>=1 (not installed)",
        ),
        ("no_docker", lambda folder: (folder / "server" / "Dockerfile").unlink(), "Dockerfile", "no Dockerfile at server/Dockerfile"),
        ("wrong_client", _replace("openenv.yaml", "class: {Class}Env", "class: Nope"), "client", "has no attribute 'Nope'"),
        ("bad_schema", _replace("openenv.yaml", "port: 8000", "port: eighty"), "openenv.yaml", "port: Input should be a valid integer"),
        ("no_pyproject", lambda folder: (folder / "pyproject.toml").unlink(), "pyproject.toml", "no pyproject.toml"),
    ],
)
def test_validate_reports_the_failing_check(project, name, edit, failing, message):
    cwd, env, _ = project
    folder = _broken_scaffold(cwd, env, name, edit)
    result = run(["validate", str(folder)], env=env, cwd=cwd)
    assert result.returncode == 1
    assert "FAIL" in rows(result.stdout)[failing], result.stdout
    assert message in " ".join(result.stdout.split()), result.stdout
    assert f"{name}: " in result.stderr and "check(s) failed" in result.stderr


def test_validate_fails_check_env_for_a_broken_environment(project):
    """An observation outside the declared space fails at the server, the step the user would hit."""
    cwd, env, _ = project
    folder = _broken_scaffold(cwd, env, "off_by_one", _replace("server/{name}_environment.py", "position=self._position,", "position=self.size,"))
    result = run(["validate", str(folder)], env=env, cwd=cwd)
    assert result.returncode == 1
    table = rows(result.stdout)
    assert "ok" in table["server starts"] and "FAIL" in table["gymnasium check_env"], result.stdout


# --- list / bench ------------------------------------------------------------------


def test_list_reports_status_of_every_environment():
    result = run(["list", "--json"])
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert {e.name for e in load_registry.__wrapped__(PACKAGE / "registry.yaml")} <= set(listed)
    assert listed["echo"]["ok"] and listed["echo"]["id"] == "openenv/echo-v0" and listed["echo"]["source"] == "registry"
    assert listed["echo"]["description"].startswith("Echoes")  # from its openenv.yaml
    table = run(["list"])
    assert table.returncode == 0 and "openenv/echo-v0" in table.stdout


def test_bench_prints_steps_per_second():
    result = run(["bench", "echo", "--seconds", "1", "--num-envs", "2", "--num-servers", "1"])
    assert result.returncode == 0, result.stderr
    line = " ".join(result.stdout.split())
    rate = float(line.split(" steps/s")[0].split("= ")[-1].replace(",", ""))
    assert rate > 0 and "openenv/echo-v0" in line and "(2 envs" in line


def test_bench_a_folder():
    result = run(["bench", str(WALKER), "--seconds", "1", "--num-envs", "2", "--num-servers", "1"])
    assert result.returncode == 0, result.stderr
    assert "openenv/walker-v0" in result.stdout and "steps/s" in result.stdout


def test_bench_bad_arguments():
    assert "Did you mean echo?" in run(["bench", "echoo"]).stderr
    result = run(["bench", "echo", "--env-kwargs", "[1, 2]"])
    assert result.returncode == 1 and "--env-kwargs must be a JSON object" in result.stderr
    result = run(["bench", "echo", "--seconds", "0.2", "--num-servers", "1", "--env-kwargs", '{"max_steps": 0}'])
    assert result.returncode == 1 and "max_steps must be >= 1" in result.stderr


# --- build / push ------------------------------------------------------------------


def test_build_and_push_fail_clearly_without_a_daemon(tmp_path):
    no_daemon = {**BASE_ENV, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = run(["build", str(WALKER)], env=no_daemon)
    assert result.returncode == 1 and "the docker daemon is not reachable" in result.stderr
    assert "scripts/docker-setup.sh" in result.stderr
    result = run(["build", str(WALKER), "--build-arg", "NOEQUALS"], env=no_daemon)
    assert result.returncode == 1 and "--build-arg must be KEY=VALUE, got 'NOEQUALS'" in result.stderr
    result = run(["push", str(WALKER)], env=no_daemon)
    assert result.returncode == 2 and "Missing option '--registry'" in result.stderr
    result = run(["push", str(WALKER), "--registry", "localhost:5000"], env=no_daemon)
    assert result.returncode == 1 and "--registry must be HOST[:PORT]/NAMESPACE" in result.stderr


@pytest.fixture(scope="module")
def docker_env():
    """dockerd and the offline build settings (scripts/docker-setup.sh)."""
    return {**BASE_ENV, **docker_exports()}


@pytest.fixture(scope="module")
def local_registry():
    """Debian's docker-registry on loopback. Its storage persists (like an image
    cache), so later runs upload only the layers that changed."""
    binary = shutil.which("docker-registry")
    assert binary is not None, "push tests need a local registry: apt-get install -y docker-registry"
    storage = Path(os.environ.get("GYM_OPENENV_TEST_REGISTRY_DIR", "/var/tmp/gym-openenv-test-registry"))
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = storage / f"config-{port}.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "docker-registry did not answer"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        config.unlink()


def _run_image(image: str, env: dict, *extra: str) -> tuple[str, str]:
    """docker run the image on a loopback port; (container id, base URL) once it answers."""
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8000", *extra, image], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    port = subprocess.run(["docker", "port", container, "8000"], env=env, capture_output=True, text=True, check=False).stdout.split(":")[-1].strip()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return container, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = subprocess.run(["docker", "logs", container], env=env, capture_output=True, text=True, check=False)
            subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, check=False)
            pytest.fail(f"{image} did not answer:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        time.sleep(0.3)


@pytest.mark.timeout(1800)  # the first build installs openenv-core and its dependencies into the image
def test_build_an_upstream_folder_and_run_its_image(docker_env, tmp_path):
    wheels = wheel_dir_with(f"openenv-core=={version('openenv-core')}", base=docker_env["OPENENV_DOCKER_WHEELS"])
    env = {**docker_env, "OPENENV_DOCKER_WHEELS": str(wheels)}
    result = run(["build", str(WALKER)], env=env, cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "built gym-openenv/walker_env:latest" in result.stdout  # no version in its openenv.yaml
    assert "context: " + str(WALKER) in " ".join(result.stderr.split())
    container, url = _run_image("gym-openenv/walker_env:latest", env)
    try:
        assert httpx.get(url + "/schema", timeout=10).json()["action"]["title"] == "WalkerAction"
    finally:
        subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, check=False)


@pytest.mark.timeout(1800)
def test_build_push_and_run_the_scaffold_image(project, docker_env, local_registry, tmp_path):
    cwd, _, _ = project
    # The scaffold installs gym-openenv from the wheel directory: a wheel of this checkout.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = wheel_dir_with(extra_wheels=tuple(tmp_path.glob("gym_openenv-*.whl")), base=docker_env["OPENENV_DOCKER_WHEELS"])
    env = {**docker_env, "OPENENV_DOCKER_WHEELS": str(wheels)}
    result = run(["build", "my_env"], env=env, cwd=cwd, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "built gym-openenv/my_env:0.1.0" in result.stdout

    container, url = _run_image("gym-openenv/my_env:0.1.0", env, "-e", 'OPENENV_ENV_KWARGS={"size": 6}')
    try:
        schema = httpx.get(url + "/schema", timeout=10).json()
        assert schema["observation"]["properties"]["position"]["x-gym-space"]["n"] == 6
    finally:
        subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, check=False)

    result = run(["push", "my_env", "--registry", f"{local_registry}/tests"], env=env, cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"pushed {local_registry}/tests/my_env:0.1.0" in result.stdout
    tags = httpx.get(f"http://{local_registry}/v2/tests/my_env/tags/list", timeout=10).json()
    assert tags == {"name": "tests/my_env", "tags": ["0.1.0"]}

    result = run(["push", "my_env", "--registry", f"{local_registry}/tests", "--tag", "gym-openenv/never-built:1"], env=env, cwd=cwd)
    assert result.returncode == 1 and "no local image gym-openenv/never-built:1; run gym-openenv build first" in result.stderr
