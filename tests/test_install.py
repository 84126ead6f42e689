"""Installed as a user installs it: a wheel built from this checkout, in a fresh venv
under /tmp, used from another folder.

The venv has no access to this checkout (no editable install, no PYTHONPATH), so
anything that only works beside the source tree fails here: data files outside
the package, top-level packages other than ``gym_openenv``, a CLI that writes into
the package, a sandbox that cannot see an interpreter under /tmp.
"""

import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.fixtures import docker_exports

ROOT = Path(__file__).resolve().parent.parent

SMOKE = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np
    from gymnasium.utils.env_checker import check_env

    import gym_openenv

    assert "site-packages" in gym_openenv.__file__, gym_openenv.__file__

    env = gym.make("openenv/echo-v0")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("hello")
    assert obs == "hello" and reward > 0, (obs, reward)
    env.close()

    env = gym.make("openenv/atari-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (210, 160, 3) and obs.dtype == np.uint8, (obs.shape, obs.dtype)
    for _ in range(10):
        obs, *_ = env.step(env.action_space.sample())
    env.close()

    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=1)
    envs.reset(seed=0)
    obs, rewards, terminated, truncated, info = envs.step(np.array(["a", "bb", "ccc", "dddd"]))
    assert list(obs) == ["a", "bb", "ccc", "dddd"], obs
    envs.close()

    env = gym.make("openenv/echo-v0", provider="sandbox")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
    print("SMOKE OK")
    """
)


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("gym_openenv-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv under /tmp with the wheel and its ``[atari,docker]`` extras installed from the registry."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), f"{wheel}[atari,docker]"],
        check=True,
        timeout=1200,
    )
    return root


def test_wheel_holds_only_the_gym_openenv_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"gym_openenv", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    # Data the package reads at run time ships inside it.
    for needed in ("gym_openenv/registry.yaml", "gym_openenv/servers/atari/server/Dockerfile", "gym_openenv/py.typed"):
        assert needed in names, needed


def _run(venv: Path, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_gym_make_make_vec_and_sandbox_from_another_folder(venv, tmp_path):
    result = _run(venv, [str(venv / "bin" / "python"), "-c", SMOKE], cwd=tmp_path)
    assert "SMOKE OK" in result.stdout


def test_cli_init_and_validate_in_the_users_folder(venv, tmp_path):
    package = Path(
        _run(venv, [str(venv / "bin" / "python"), "-c", "import gym_openenv, os; print(os.path.dirname(gym_openenv.__file__))"], cwd=tmp_path).stdout.strip()
    )
    before = _tree_digest(package)
    _run(venv, ["gym-openenv", "init", "my_env"], cwd=tmp_path)
    assert (tmp_path / "my_env" / "openenv.yaml").is_file()
    assert (tmp_path / "my_env" / "pyproject.toml").is_file()
    _run(venv, ["gym-openenv", "validate", "my_env"], cwd=tmp_path, timeout=900)
    listed = _run(venv, ["gym-openenv", "list"], cwd=tmp_path).stdout
    assert "atari" in listed and "echo" in listed
    assert _tree_digest(package) == before, "the CLI wrote into the installed package"


DOCKER_SMOKE = textwrap.dedent(
    """
    import gymnasium as gym
    import gym_openenv

    env = gym.make("openenv/echo-v0", provider="docker")
    env.reset(seed=0)
    obs, reward, *_ = env.step("from a wheel")
    assert obs == "from a wheel", obs
    env.close()
    print("DOCKER OK")
    """
)


def test_docker_provider_builds_from_the_installed_package(venv, tmp_path):
    """No source checkout: the image is built from the installed package and its metadata."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in docker_exports().items():
            mp.setenv(key, value)
        result = _run(venv, [str(venv / "bin" / "python"), "-c", DOCKER_SMOKE], cwd=tmp_path, timeout=1200)
    assert "DOCKER OK" in result.stdout
