"""The ``gym-openenv`` command, run as a real process.

Commands that write (``init``) or serve run in a temporary copy of the
repository layout (gym_openenv/, gym_openenv/servers/echo, registry.yaml), first on
PYTHONPATH, so the real registry.yaml and gym_openenv/servers/ are never touched and the
copy's registry is the one ``gym.make`` reads.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from gym_openenv.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "gym_openenv.cli"]


def run(args, *, env=None, cwd=None, timeout=180):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the repository layout; yields (root, environment for subprocesses)."""
    root = tmp_path_factory.mktemp("repo")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "gym_openenv", root / "gym_openenv", ignore=ignore)
    shutil.copytree(ROOT / "servers" / "echo", root / "servers" / "echo", ignore=ignore)
    (root / "servers" / "__init__.py").touch()
    for name in ("registry.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("GYM_OPENENV_ROOT", None)
    yield root, env


@pytest.fixture(scope="module")
def scaffolded(repo):
    """``gym-openenv init grid_world`` in the copy."""
    root, env = repo
    before = (root / "registry.yaml").read_text()
    result = run(["init", "grid_world", "--description", "Walk: find the goal"], env=env, cwd=root)
    assert result.returncode == 0, result.stderr
    return root, env, before, result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
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


# --- the entry point -------------------------------------------------------------


def test_console_script_lists_every_command():
    script = shutil.which("gym-openenv")
    assert script is not None, "pip install -e . installs the gym-openenv console script"
    result = subprocess.run(
        [script, "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("init", "validate", "serve", "list", "bench", "build", "push"):
        assert f" {command} " in result.stdout


def test_unknown_command_fails_with_usage():
    result = run(["frobnicate"])
    assert result.returncode == 2 and "No such command 'frobnicate'" in result.stderr


# --- init -> validate -> serve -> gym.make ----------------------------------------


def test_init_writes_openenv_layout_and_appends_registry_entry(scaffolded):
    root, _, before, stdout = scaffolded
    folder = root / "servers" / "grid_world"
    for relative in (
        "__init__.py",
        "models.py",
        "client.py",
        "openenv.yaml",
        "README.md",
        "server/__init__.py",
        "server/environment.py",
        "server/app.py",
        "server/Dockerfile",
    ):
        assert (folder / relative).is_file(), relative
    assert (root / "tests" / "servers" / "test_grid_world.py").is_file()
    after = (root / "registry.yaml").read_text()
    assert after.startswith(before), "the existing registry text, comments included, stays as it was"
    entry = {e.name: e for e in load_registry.__wrapped__(root / "registry.yaml")}["grid_world"]
    assert entry.environment == "gym_openenv.servers.grid_world.server.environment:GridWorldEnvironment"
    assert entry.description == "Walk: find the goal" and entry.server == "gym_openenv/servers/grid_world"
    assert yaml.safe_load((folder / "openenv.yaml").read_text())["description"] == "Walk: find the goal"
    assert "openenv/grid_world-v0" in stdout and "gym-openenv validate" in stdout


def test_init_scaffold_validates(scaffolded):
    root, env, _, _ = scaffolded
    result = run(["validate", "gym_openenv/servers/grid_world"], env=env, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "grid_world is valid" in result.stdout
    assert "gymnasium check_env" in result.stdout and "Discrete(8)" in result.stdout


def test_init_scaffold_serves_to_gym_make(scaffolded):
    root, env, _, _ = scaffolded
    # --port 0: the server binds a free port and reports it (OPENENV_LISTENING <url>).
    server = subprocess.Popen(
        CLI + ["serve", "grid_world", "--port", "0", "--env-kwargs", '{"size": 5}'],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("OPENENV_LISTENING "), line + server.stderr.read()
        url = line.split()[1]
        wait_healthy(url, server)
        script = f"""
import gymnasium as gym, gym_openenv
served = gym.make("openenv/grid_world-v0", url="{url}")
assert served.observation_space == gym.spaces.Discrete(5), served.observation_space
obs, info = served.reset(seed=0)
obs, reward, terminated, truncated, info = served.step(2)
assert "distance" in info
for _ in range(20):
    obs, reward, terminated, truncated, info = served.step(served.action_space.sample())
    if terminated or truncated:
        break
served.close()
print("stepped", served.observation_space)
"""
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, result.stderr
        assert "stepped Discrete(5)" in result.stdout
    finally:
        stop(server)


def test_init_scaffold_test_passes(scaffolded):
    root, env, _, _ = scaffolded
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "tests/servers/test_grid_world.py"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


@pytest.mark.parametrize(
    "name, message",
    [
        ("Grid-World", "must be lowercase letters, digits and underscores, starting with a letter (e.g. 'grid_world')"),
        ("echo", "would overwrite gym_openenv/servers/echo/"),
        ("atari", "already has an environment named 'atari'"),
        ("maze_env", "ends in '_env', which name lookups drop; call it 'maze'"),
    ],
)
def test_init_refuses_bad_or_taken_names(repo, name, message):
    root, env = repo
    before = (root / "registry.yaml").read_text()
    result = run(["init", name], env=env, cwd=root)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split()), result.stderr
    assert (root / "registry.yaml").read_text() == before
    assert not (root / "servers" / "atari").exists()


def test_init_with_root_starts_a_registry(tmp_path):
    result = run(["init", "maze", "--root", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert [e.name for e in load_registry.__wrapped__(tmp_path / "registry.yaml")] == ["maze"]
    assert (tmp_path / "servers" / "maze" / "server" / "environment.py").is_file()
    assert "--root" in result.stdout  # says gym.make reads another registry


def test_serve_reload_restarts_on_change(scaffolded):
    root, env, _, _ = scaffolded
    port = free_port()
    environment = root / "servers" / "grid_world" / "server" / "environment.py"
    original = environment.read_text()
    log = (root / "reload.log").open("w")
    server = subprocess.Popen(
        CLI + ["serve", "gym_openenv/servers/grid_world", "--port", str(port), "--reload"],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        environment.write_text(original.replace('"Walk: find the goal"', '"Walk: reloaded"'))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/metadata", timeout=2).json().get("description") == "Walk: reloaded":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server did not reload the changed environment:\n" + (root / "reload.log").read_text())
    finally:
        stop(server)
        log.close()
        environment.write_text(original)


def test_serve_unknown_name_suggests(repo):
    root, env = repo
    result = run(["serve", "ecoh"], env=env, cwd=root)
    assert result.returncode == 1
    assert "no environment named 'ecoh'. Did you mean echo?" in result.stderr


def test_serve_folder_without_manifest(tmp_path):
    result = run(["serve", str(tmp_path)])
    assert result.returncode == 1 and "openenv.yaml: no such file" in " ".join(result.stderr.split())


# --- validate failures ------------------------------------------------------------


def _broken_copy(root: Path, name: str, **changes) -> Path:
    folder = root / "servers" / name
    shutil.copytree(root / "servers" / "echo", folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    manifest = yaml.safe_load((folder / "openenv.yaml").read_text())
    manifest["name"] = name
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            manifest[section][field] = value
        else:
            manifest[section] = value
    (folder / "openenv.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.mark.parametrize(
    "name, changes, failing, message",
    [
        ("no_action", {"models__action": "gym_openenv.servers.echo.models:NoSuchAction"}, "models import", "has no attribute 'NoSuchAction'"),
        (
            "needs_dep",
            {"dependencies": ["surely-not-installed-package>=1"]},
            "dependencies installed",
            "surely-not-installed-package>=1 (not installed)",
        ),
        ("no_docker", {"server__dockerfile": "docker/Dockerfile"}, "Dockerfile", "server.dockerfile 'docker/Dockerfile'"),
        ("wrong_client", {"client__class": "Nope"}, "client", "has no attribute 'Nope'"),
        ("bad_schema", {"server__port": "eighty"}, "openenv.yaml", "server.port: Input should be a valid integer"),
    ],
)
def test_validate_reports_the_failing_check(repo, name, changes, failing, message):
    root, env = repo
    folder = _broken_copy(root, name, **changes)
    result = run(["validate"], env=env, cwd=folder)  # PATH defaults to the current directory
    assert result.returncode == 1
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "FAIL" in rows[failing], result.stdout
    assert message in " ".join(result.stdout.split()), result.stdout
    assert f"{name}: " in result.stderr and "check(s) failed" in result.stderr


def test_validate_fails_check_env_for_a_broken_environment(repo):
    """An observation outside the declared space fails at the server, the step the user would hit."""
    root, env = repo
    assert run(["init", "off_by_one"], env=env, cwd=root).returncode == 0
    environment = root / "servers" / "off_by_one" / "server" / "environment.py"
    environment.write_text(environment.read_text().replace("position=self._position,", "position=self.size,"))
    result = run(["validate", "gym_openenv/servers/off_by_one"], env=env, cwd=root)
    assert result.returncode == 1
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "ok" in rows["server starts"] and "FAIL" in rows["gymnasium check_env"], result.stdout


# --- list / bench ------------------------------------------------------------------


def test_list_reports_status_of_every_environment(repo):
    root, env = repo
    result = run(["list", "--json"], env=env, cwd=root)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["echo"]["ok"] and rows["echo"]["status"] == "ok" and rows["echo"]["id"] == "openenv/echo-v0"
    # The copy has registry entries whose folders were not copied: they cannot run here.
    assert not rows["atari"]["ok"] and "no such file" in rows["atari"]["status"]
    table = run(["list"], env=env, cwd=root)
    assert table.returncode == 0 and "openenv/echo-v0" in table.stdout


def test_list_of_this_repository_through_the_console_script():
    result = subprocess.run([shutil.which("gym-openenv"), "list", "--json"], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert {e.name for e in load_registry.__wrapped__(ROOT / "registry.yaml")} <= names


def test_bench_prints_steps_per_second(repo):
    root, env = repo
    result = run(["bench", "echo", "--seconds", "1", "--num-envs", "2", "--num-servers", "1"], env=env, cwd=root)
    assert result.returncode == 0, result.stderr
    line = " ".join(result.stdout.split())
    rate = float(line.split(" steps/s")[0].split("= ")[-1].replace(",", ""))
    assert rate > 0 and "openenv/echo-v0" in line and "(2 envs" in line


def test_bench_bad_arguments(repo):
    root, env = repo
    assert "Did you mean echo?" in run(["bench", "echoo"], env=env, cwd=root).stderr
    result = run(["bench", "echo", "--env-kwargs", "[1, 2]"], env=env, cwd=root)
    assert result.returncode == 1 and "--env-kwargs must be a JSON object" in result.stderr
    result = run(["bench", "echo", "--seconds", "0.2", "--num-servers", "1", "--env-kwargs", '{"max_steps": 0}'], env=env, cwd=root)
    assert result.returncode == 1 and "max_steps must be >= 1" in result.stderr


# --- build / push ------------------------------------------------------------------


def test_build_and_push_fail_clearly_without_a_daemon(repo):
    root, env = repo
    no_daemon = {**env, "DOCKER_HOST": f"unix://{root}/no-such-docker.sock"}
    result = run(["build", "gym_openenv/servers/echo"], env=no_daemon, cwd=root)
    assert result.returncode == 1 and "the docker daemon is not reachable" in result.stderr
    assert "scripts/docker-setup.sh" in result.stderr
    result = run(["build", "gym_openenv/servers/echo", "--build-arg", "NOEQUALS"], env=no_daemon, cwd=root)
    assert result.returncode == 1 and "--build-arg must be KEY=VALUE, got 'NOEQUALS'" in result.stderr
    result = run(["push", "gym_openenv/servers/echo"], env=no_daemon, cwd=root)
    assert result.returncode == 2 and "Missing option '--registry'" in result.stderr
    result = run(["push", "gym_openenv/servers/echo", "--registry", "localhost:5000"], env=no_daemon, cwd=root)
    assert result.returncode == 1 and "--registry must be HOST[:PORT]/NAMESPACE" in result.stderr


@pytest.fixture(scope="module")
def docker_env(repo):
    """The environment scripts/docker-setup.sh prepares: dockerd, an offline base image, a wheel cache."""
    script = ROOT / "scripts" / "docker-setup.sh"
    assert script.is_file(), "build/push tests need scripts/docker-setup.sh (dockerd and an offline base image)"
    setup = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800, check=False)
    assert setup.returncode == 0, setup.stderr[-4000:]
    _, env = repo
    env = dict(env)
    for line in setup.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


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


def test_build_push_and_run_the_scaffold_image(scaffolded, docker_env, local_registry):
    root, _, _, _ = scaffolded
    env = docker_env
    result = run(["build", "gym_openenv/servers/grid_world"], env=env, cwd=root, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "built gym-openenv/grid_world:0.1.0" in result.stdout
    assert "--build-arg BASE_IMAGE=" in " ".join(result.stderr.split())  # OPENENV_DOCKER_BASE_IMAGE passed through
    assert not (root / ".docker-wheels").exists(), "staged wheels are removed after the build"

    # The image serves the environment.
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8000", "-e", 'OPENENV_ENV_KWARGS={"size": 6}', "gym-openenv/grid_world:0.1.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        port = (
            subprocess.run(["docker", "port", container, "8000"], env=env, capture_output=True, text=True, check=False)
            .stdout.split(":")[-1]
            .strip()
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                schema = httpx.get(url + "/schema", timeout=2).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the container's server did not answer"
                time.sleep(0.3)
        assert schema["observation"]["properties"]["position"]["x-gym-space"]["n"] == 6
    finally:
        subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, check=False)

    result = run(["push", "gym_openenv/servers/grid_world", "--registry", f"{local_registry}/tests"], env=env, cwd=root, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"pushed {local_registry}/tests/grid_world:0.1.0" in result.stdout
    tags = httpx.get(f"http://{local_registry}/v2/tests/grid_world/tags/list", timeout=10).json()
    assert tags == {"name": "tests/grid_world", "tags": ["0.1.0"]}

    result = run(
        ["push", "gym_openenv/servers/grid_world", "--registry", f"{local_registry}/tests", "--tag", "gym-openenv/never-built:1"], env=env, cwd=root
    )
    assert result.returncode == 1 and "no local image gym-openenv/never-built:1; run gym-openenv build first" in result.stderr
