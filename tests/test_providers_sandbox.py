"""The sandbox provider: servers inside bubblewrap (no network, read-only system,
private /tmp), reached over a Unix socket; nothing left after close()."""

import os
import socket
import subprocess
import sys
import tempfile

import gymnasium as gym
import numpy as np
import psutil
import pytest
from gymnasium.utils.env_checker import check_env

from gym_openenv.providers.sandbox import SandboxProvider, bwrap_command

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"


def sandboxed_processes(provider: SandboxProvider) -> list[psutil.Process]:
    bwrap = psutil.Process(provider.pid)
    return [bwrap, *bwrap.children(recursive=True)]


def test_echo_in_the_sandbox_passes_check_env_and_leaves_nothing():
    env = gym.make("openenv/echo-v0", provider="sandbox")
    provider = env.unwrapped._provider
    try:
        assert isinstance(provider, SandboxProvider)
        assert env.unwrapped.base_url.startswith("http+unix://")
        processes = sandboxed_processes(provider)
        server = processes[-1]
        assert "gym_openenv.server" in server.cmdline()
        # Its own, empty network namespace: no interface to listen on but its socket.
        assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        check_env(env.unwrapped, skip_render_check=True)
        env.reset(seed=0)
        assert env.step("boxed")[:2] == ("boxed", pytest.approx(0.5))
        socket_dir = os.path.dirname(provider.uds)
    finally:
        env.close()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    assert not os.path.exists(socket_dir)


def test_atari_pong_in_the_sandbox_matches_the_local_server():
    boxed = gym.make("openenv/atari-v0", provider="sandbox", game="pong")
    local = gym.make("openenv/atari-v0", game="pong")
    try:
        assert boxed.action_space == gym.spaces.Discrete(6)
        np.testing.assert_array_equal(boxed.reset(seed=5)[0], local.reset(seed=5)[0])
        for action in [0, 1, 2, 3, 4, 5] * 4:
            step_b, step_l = boxed.step(action), local.step(action)
            np.testing.assert_array_equal(step_b[0], step_l[0])
            assert step_b[1:4] == step_l[1:4]
    finally:
        boxed.close()
        local.close()


def test_make_vec_over_sandboxed_servers():
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, provider="sandbox", num_servers=2)
    try:
        assert [type(p) for p in envs.unwrapped._providers] == [SandboxProvider, SandboxProvider]
        envs.reset(seed=0)
        obs, *_ = envs.step(np.array(["w", "x", "y", "z"]))
        assert list(obs) == ["w", "x", "y", "z"]
        pids = [p.pid for p in envs.unwrapped._providers]
    finally:
        envs.close()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def probe(code: str, tmp_path, **options) -> subprocess.CompletedProcess:
    """Run Python code under the same sandbox the provider uses."""
    return subprocess.run(bwrap_command([sys.executable, "-c", code], writable=[str(tmp_path)], **options), check=False, capture_output=True, text=True, timeout=60)


def test_the_sandbox_has_no_network_a_read_only_system_and_a_private_tmp(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        assert probe(connect, tmp_path).returncode != 0  # our loopback is not its loopback
        assert probe(connect, tmp_path, share_network=True).returncode == 0
    repo_file = os.path.abspath(__file__) + ".written"
    denied = probe(f"open({repo_file!r}, 'w')", tmp_path)
    assert "Read-only file system" in denied.stderr and not os.path.exists(repo_file)
    assert probe(f"open({str(tmp_path / 'ok')!r}, 'w').write('x')", tmp_path).returncode == 0
    assert (tmp_path / "ok").read_text() == "x"
    marker = f"/tmp/openenv-sandbox-probe-{os.getpid()}"
    assert probe(f"open({marker!r}, 'w').write('x')", tmp_path).returncode == 0
    assert not os.path.exists(marker)  # its /tmp is its own


def test_host_and_uds_options_are_rejected():
    with pytest.raises(ValueError, match="Unix socket of its own"):
        SandboxProvider(ECHO, uds="/tmp/x.sock")


def test_a_venv_under_tmp_works_in_the_sandbox():
    # The interpreter lives in a venv under /tmp, the sandbox's /tmp is private: its
    # folders (and gym_openenv's) must be bound back, read-only.
    with tempfile.TemporaryDirectory(prefix="openenv-venv-", dir="/tmp") as venv:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True, timeout=300)
        python = os.path.join(venv, "bin", "python")
        code = (
            "import sys, gymnasium as gym, gym_openenv\n"
            "from gym_openenv.providers.sandbox import interpreter_paths\n"
            "assert sys.prefix in interpreter_paths(), interpreter_paths()\n"
            "env = gym.make('openenv/echo-v0', provider='sandbox')\n"
            "env.reset(); print(env.step('from a venv')[0]); env.close()\n"
        )
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, cwd=venv)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == "from a venv"
