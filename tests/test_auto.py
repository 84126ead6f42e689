"""AutoEnv / AutoAction and the one name lookup: registry.yaml, registered folders and
installed packages' entry points, forgiving spellings, "did you mean", gym envs and typed clients."""

import textwrap

import gymnasium as gym
import pytest

import gym_openenv
from gym_openenv import AutoAction, AutoEnv
from gym_openenv.client import EnvClient
from gym_openenv.errors import UnknownEnvironment
from gym_openenv.registry import ENTRY_POINT_GROUP, REGISTRY_PATH, environments, find, load_registry, normalize_name
from gym_openenv.servers.echo.client import EchoEnv
from gym_openenv.servers.echo.models import EchoAction


def test_public_api_exports_auto_classes():
    assert gym_openenv.AutoEnv is AutoEnv and gym_openenv.AutoAction is AutoAction
    assert {"AutoEnv", "AutoAction", "register_folder"} <= set(gym_openenv.__all__)


@pytest.mark.parametrize("name", ["coding", "coding-env", "coding_env", "openenv/coding-v0", " coding ", "Coding_Env"])
def test_spellings_name_the_same_environment(name):
    assert normalize_name(name) == "coding"
    assert find(name).environment == "gym_openenv.servers.coding.server.environment:CodingEnvironment"


def test_list_environments_is_the_registry():
    listed = AutoEnv.list_environments()
    registered = load_registry(REGISTRY_PATH)
    assert {e.name for e in registered} <= {entry.name for entry in listed}
    echo = next(entry for entry in listed if entry.name == "echo")
    assert echo.id == "openenv/echo-v0" and echo.source == "registry"
    assert echo.server == REGISTRY_PATH.parent / "servers" / "echo"
    assert echo.manifest().client.class_name == "EchoEnv"
    assert echo.description == echo.manifest().description
    assert echo.serve_command() == ["gym-openenv", "serve", "echo", "--host", "0.0.0.0", "--port", "8000"]


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownEnvironment, match=r"no environment named 'codng-env'\. Did you mean coding\?") as error:
        AutoEnv.from_env("codng-env")
    assert isinstance(error.value, KeyError)  # catchable as a lookup failure too
    with pytest.raises(UnknownEnvironment, match="Known: .*echo"):
        AutoAction.from_env("zzz")


def test_auto_action_is_the_manifest_action():
    from gym_openenv.servers.atari.models import AtariAction
    from gym_openenv.servers.coding.models import CodeAction

    assert AutoAction.from_env("coding-env") is CodeAction
    assert AutoAction.from_env("openenv/atari-v0") is AtariAction
    assert AutoAction.from_env("echo_env") is EchoAction
    assert AutoAction.from_env(REGISTRY_PATH.parent / "servers" / "echo") is EchoAction  # a folder of ours: its registry entry


def test_from_env_against_a_running_server(echo_server):
    env = AutoEnv.from_env("echo-env", base_url=echo_server)
    try:
        assert isinstance(env.unwrapped, gym.Env) and env.spec.id == "openenv/echo-v0"
        env.reset(seed=0)
        assert env.step("hello")[:2] == ("hello", pytest.approx(0.5))
    finally:
        env.close()
    with AutoEnv.from_env("echo", client=True, base_url=echo_server).sync() as client:
        result = client.step(AutoAction.from_env("echo")(message="hi"))
        assert result.observation.echoed_message == "hi"
    with pytest.raises(ValueError, match="with base_url= there is none"):
        AutoEnv.from_env("echo", client=True, base_url=echo_server, max_steps=3)


def test_from_env_client_launches_a_server():
    client = AutoEnv.from_env("echo_env", client=True, max_steps=1)
    assert isinstance(client, EchoEnv)
    with client.sync() as sync:
        sync.reset()
        result = sync.step(EchoAction(message="bye"))
        assert result.done and result.truncated  # max_steps=1 reached the server


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed package (a dist-info folder on sys.path, as pip leaves it) declaring environments."""
    (tmp_path / "plugdemo").mkdir()
    (tmp_path / "plugdemo" / "__init__.py").write_text(
        textwrap.dedent(
            '''
            from gym_openenv.servers.echo.server.environment import EchoEnvironment


            class PlugEnvironment(EchoEnvironment):
                """Echo, shipped by another package."""
            '''
        )
    )
    dist = tmp_path / "plugdemo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugdemo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nplug-echo = plugdemo:PlugEnvironment\necho = plugdemo:PlugEnvironment\nbroken = no_such_package_h6\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # Server processes import the plugin too.
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def test_entry_point_environments_are_discovered(plugin):
    with pytest.warns(UserWarning) as caught:
        found = environments()
    messages = " ".join(str(w.message) for w in caught)
    assert "'echo' is already registry's; ignored" in messages
    assert "entry point 'broken' = 'no_such_package_h6'" in messages and "neither 'module:Class' nor an installed package" in messages
    assert found["echo"].source == "registry"
    assert found["plug_echo"].source == "entry point (plugdemo)"
    assert found["plug_echo"].environment == "plugdemo:PlugEnvironment"
    assert "broken" not in found
    with pytest.warns(UserWarning):
        gym_openenv.registry.register_all()
    assert gym.spec("openenv/plug_echo-v0").kwargs == {"environment": "plugdemo:PlugEnvironment"}


def test_entry_point_environment_makes_env_action_and_client(plugin):
    with pytest.warns(UserWarning):
        assert AutoAction.from_env("plug-echo") is EchoAction  # Environment.action_type
    with pytest.warns(UserWarning):
        env = AutoEnv.from_env("plug_echo_env")
    try:
        assert env.spec.id == "openenv/plug_echo-v0"
        env.reset(seed=0)
        assert env.step("plug")[0] == "plug"
    finally:
        env.close()
    with pytest.warns(UserWarning):
        client = AutoEnv.from_env("plug_echo", client=True)
    assert isinstance(client, EnvClient) and client.action_type is EchoAction
    with client.sync() as sync:
        assert sync.step(EchoAction(message="typed")).observation.echoed_message == "typed"
