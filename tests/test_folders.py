"""OpenEnv environment folders as gym ids: ``register_folder`` on a folder in upstream's exact
layout written with openenv-core (tests/fixtures/walker_env), served unmodified by its own app
(a local process, or its own Dockerfile), through gym.make, check_env and make_vec; installed
packages through entry points; AutoEnv on a path."""

import asyncio
import re
import shutil
from importlib.metadata import version

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gym_openenv
from gym_openenv import AutoAction, AutoEnv
from gym_openenv.client import fetch_json
from gym_openenv.errors import ServerStartError
from gym_openenv.registry import ENTRY_POINT_GROUP, environments, find, register_folder
from tests.fixtures import WALKER, docker_exports, wheel_dir_with


def test_register_folder_returns_a_gym_id_made_from_the_manifest_name():
    env_id = register_folder(WALKER)
    assert env_id == "openenv/walker-v0"  # openenv.yaml's name walker_env, without OpenEnv's _env suffix
    assert register_folder(str(WALKER)) == env_id  # again: the same entry
    entry = find("walker_env")
    assert entry.source == "folder" and entry.server == WALKER and entry.environment == f"server.app:app@{WALKER}"
    assert gym.spec(env_id).kwargs == {"environment": f"server.app:app@{WALKER}"}


def test_gym_make_serves_the_folder_unmodified_and_passes_check_env():
    env = gym.make(register_folder(WALKER))
    try:
        # Spaces from the openenv-core models' JSON schema (bounded ints -> Discrete).
        assert env.action_space == gym.spaces.Discrete(3)
        assert env.observation_space["position"] == gym.spaces.Discrete(8)
        check_env(env.unwrapped, skip_render_check=True)
        obs, info = env.reset(seed=3)
        direction = 2  # right; turn round when the goal gets further away
        for _ in range(20):
            before = obs["distance"]
            obs, reward, terminated, truncated, info = env.step(direction)
            if terminated or truncated:
                break
            if obs["distance"] > before or obs["distance"] == before:
                direction = 2 - direction
        assert terminated and reward == 1.0 and obs["distance"] == 0
        metadata = asyncio.run(fetch_json(env.unwrapped.base_url, "/metadata"))
        assert metadata["name"] == "WalkerEnvironment"  # openenv-core's own server answered
    finally:
        env.close()


def test_make_vec_steps_many_sessions_of_the_folder():
    envs = gym.make_vec(register_folder(WALKER), num_envs=4, num_servers=2)
    try:
        assert not envs.batched  # an openenv-core server: one OpenEnv session per env
        obs, info = envs.reset(seed=0)
        assert obs["position"].shape == (4,)
        for _ in range(30):
            obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert envs.single_observation_space["position"].contains(int(obs["position"][0]))
        assert rewards.dtype == np.float64
    finally:
        envs.close()


def test_a_copy_anywhere_with_another_name(tmp_path):
    copy = tmp_path / "elsewhere" / "walker_env"
    shutil.copytree(WALKER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    register_folder(WALKER)
    with pytest.raises(ValueError, match="openenv/walker-v0 is already folder's .* pass name="):
        register_folder(copy)
    env_id = register_folder(copy, name="walker_copy")
    assert env_id == "openenv/walker_copy-v0"
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        assert env.step(1)[0]["position"] in range(8)
    finally:
        env.close()


def test_folder_without_openenv_yaml_reads_as_openenv_does(tmp_path):
    """Some upstream folders (connect4_env) have no openenv.yaml: name from the folder, app server.app:app."""
    copy = tmp_path / "stroll_env"
    shutil.copytree(WALKER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "openenv.yaml").unlink()
    env = AutoEnv.from_env(str(copy))  # a path: registered on the way
    try:
        assert env.spec.id == "openenv/stroll-v0"
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    assert AutoAction.from_env(copy).__name__ == "WalkerAction"


def test_register_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no such environment folder"):
        register_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no module server/app.py"):
        register_folder(tmp_path)
    # Our own server folders are their registry ids.
    assert register_folder(gym_openenv.registry.REGISTRY_PATH.parent / "servers" / "echo") == "openenv/echo-v0"


def test_environment_arguments_are_refused_by_a_ready_app():
    with pytest.raises(ServerStartError, match="takes no environment arguments"):
        gym.make(register_folder(WALKER), size=5)


@pytest.fixture
def installed_walker(tmp_path, monkeypatch):
    """walker_env as pip leaves an installed package: the package on sys.path, a dist-info
    declaring it as an environment."""
    site = tmp_path / "site"
    shutil.copytree(WALKER, site / "walker_env", ignore=shutil.ignore_patterns("__pycache__"))
    dist = site / "openenv_walker_env-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: openenv-walker-env\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nwalker_pkg = walker_env\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_installed_package_is_a_gym_id_through_its_entry_point(installed_walker):
    entry = environments()["walker_pkg"]
    assert entry.source == "entry point (openenv-walker-env)" and entry.server == installed_walker / "walker_env"
    gym_openenv.registry.register_all()
    env = gym.make("openenv/walker_pkg-v0")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


# --- docker: the folder's own Dockerfile --------------------------------------------


@pytest.fixture(scope="module")
def walker_docker():
    """dockerd and the offline settings; a wheel directory with openenv-core for the walker's image."""
    exports = docker_exports()
    wheels = wheel_dir_with(f"openenv-core=={version('openenv-core')}", base=exports["OPENENV_DOCKER_WHEELS"])
    with pytest.MonkeyPatch.context() as mp:
        for key, value in exports.items():
            mp.setenv(key, value)
        mp.setenv("OPENENV_DOCKER_WHEELS", str(wheels))
        yield exports


@pytest.mark.timeout(1800)  # the first build installs openenv-core and its dependencies into the image
def test_docker_builds_the_folders_dockerfile_and_runs_its_cmd(walker_docker):
    from gym_openenv.providers.docker import DockerProvider

    env = gym.make(register_folder(WALKER), provider="docker", provider_options={"startup_timeout": 300})
    try:
        provider = env.unwrapped._provider
        assert isinstance(provider, DockerProvider) and provider.image.startswith("gym-openenv/walker_env:")
        assert provider.command() is None  # the image's own CMD: uvicorn server.app:app
        labels = provider._client.images.get(provider.image).labels
        assert labels["org.gym-openenv.dockerfile"] == "server/Dockerfile"  # the folder is the context
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    assert provider.container is None


@pytest.mark.timeout(900)
def test_docker_publishes_the_port_openenv_yaml_names(walker_docker, tmp_path):
    """A folder whose image serves on another port than 8000 (upstream's calendar_env: 8004)."""
    walker_image = gym.make(register_folder(WALKER), provider="docker")
    image = walker_image.unwrapped._provider.image
    walker_image.close()
    copy = tmp_path / "walker_env"
    shutil.copytree(WALKER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "openenv.yaml").write_text((copy / "openenv.yaml").read_text().replace("port: 8000", "port: 8004"))
    (copy / "server" / "Dockerfile").write_text(
        'ARG WALKER_IMAGE\nFROM ${WALKER_IMAGE}\nCMD ["sh", "-c", "cd /app && uvicorn server.app:app --host 0.0.0.0 --port 8004"]\n'
    )
    env = gym.make(register_folder(copy, name="walker_8004"), provider="docker", provider_options={"build_args": {"WALKER_IMAGE": image}})
    try:
        assert env.unwrapped._provider.container_port == 8004
        env.reset(seed=0)
        assert env.step(1)[0]["position"] in range(8)
    finally:
        env.close()


def test_dockerfile_missing_is_a_clear_error(tmp_path):
    copy = tmp_path / "nodocker_env"
    shutil.copytree(WALKER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "server" / "Dockerfile").unlink()
    from gym_openenv.providers.docker import image_source

    with pytest.raises(ValueError, match=re.escape("has no Dockerfile (server/Dockerfile)")):
        image_source(find(register_folder(copy, name="nodocker")).environment)
