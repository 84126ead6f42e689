"""Hostile code against the real bubblewrap sandbox (no mocks).

Each test runs an attack through the coding (one-shot) or REPL (long-lived)
environment and checks that it is contained, that the observation says what
happened, that the environment keeps working, and that no sandboxed process
outlives the step.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import gymnasium as gym
import httpx
import psutil
import pytest
from websockets.sync.client import connect as ws_connect

import gym_openenv.registry
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.servers.coding.models import CodeAction
from gym_openenv.servers.coding.server.environment import CodingEnvironment
from gym_openenv.servers.repl.models import ReplAction
from gym_openenv.servers.repl.server.environment import ReplEnvironment

SECRET_NAME, SECRET_VALUE = "GYM_OPENENV_TEST_SECRET", "hunter2-do-not-leak"


@pytest.fixture(scope="module")
def coding():
    env = CodingEnvironment(max_timeout=5)
    env.reset()
    yield env
    env.close()
    assert not env.sandbox.processes()


@pytest.fixture(scope="module")
def repl():
    env = ReplEnvironment(max_timeout=5)
    env.reset()
    yield env
    env.close()


def run(env: CodingEnvironment, code: str, timeout: float = 3.0):
    observation = env.step(CodeAction(code=code, timeout=timeout))
    assert env.sandbox.processes() == [], "a sandboxed process outlived the step"
    assert env.step(CodeAction(code="print('still working')")).stdout == "still working\n"
    return observation


def run_cell(env: ReplEnvironment, code: str, timeout: float = 3.0):
    observation = env.step(ReplAction(code=code, timeout=timeout))
    names = sorted(p.name() for p in env.sandbox.processes())  # bwrap, its init, the interpreter
    assert names == ["bwrap", "bwrap", "python3"], f"stray processes after the step: {names}"
    assert env.step(ReplAction(code="print('still working')")).stdout == "still working\n"
    return observation


# --- network -------------------------------------------------------------------


def test_no_network_not_even_the_hosts_loopback(coding):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"""
import socket
for address in [("1.1.1.1", 80), ("127.0.0.1", {port})]:
    try:
        socket.create_connection(address, timeout=2)
        print("connected", address)
    except OSError as e:
        print("refused", address, e.errno)
print(sorted(name for _, name in socket.if_nameindex()))
"""
    observation = run(coding, code)
    assert "connected" not in observation.stdout
    assert observation.stdout.count("refused") == 2
    assert "['lo']" in observation.stdout  # a private network namespace with only loopback
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing reached the host
    listener.close()


# --- files ---------------------------------------------------------------------


def test_files_outside_the_workspace_are_invisible_or_read_only(coding, tmp_path):
    server_file = tmp_path / "server_secret.txt"
    server_file.write_text("server data")
    code = f"""
import os
for path in [{str(server_file)!r}, "/root/.bashrc", "/work/main/pyproject.toml", "/etc/shadow", {__file__!r}]:
    try:
        open(path).read()
        print("READ", path)
    except OSError as e:
        print("no", path, type(e).__name__)
for path in ["/usr/evil", "/etc/evil", "/evil", "/sandbox/evil", {str(tmp_path / "written")!r}]:
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError as e:
        print("no", path, type(e).__name__)
print(sorted(os.listdir("/")))
"""
    observation = run(coding, code)
    assert observation.status == "ok", observation.stderr
    assert "READ" not in observation.stdout and "WROTE" not in observation.stdout, observation.stdout
    assert "/work" not in observation.stdout.splitlines()[-1] and "'root'" not in observation.stdout
    assert server_file.read_text() == "server data" and not (tmp_path / "written").exists()


def test_workspace_is_private_to_the_session(coding):
    other = CodingEnvironment()
    try:
        other.reset()
        other.step(CodeAction(code="open('mine.txt', 'w').write('other session')"))
        observation = run(coding, "import os; print(os.listdir('.'))")
        assert "mine.txt" not in observation.stdout
    finally:
        other.close()


# --- processes -----------------------------------------------------------------


def test_fork_bomb_is_contained(coding):
    code = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    started = time.monotonic()
    observation = run(coding, code, timeout=2)
    assert time.monotonic() - started < 15
    assert observation.status in ("timeout", "cpu_limit"), observation.message
    assert "killed" in observation.message


def test_process_that_daemonizes_does_not_outlive_the_step(coding):
    code = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        sys.stdout = open(os.devnull, "w")
        time.sleep(1.5)
        open("/workspace/daemon_was_here", "w").write("x")
        time.sleep(60)
    os._exit(0)
print("parent exits")
"""
    observation = run(coding, code)
    assert observation.stdout == "parent exits\n" and observation.status == "ok"
    time.sleep(2)
    later = coding.step(CodeAction(code="import os; print(os.path.exists('daemon_was_here'))"))
    assert later.stdout == "False\n"


def test_killing_the_parent_or_everything_only_hurts_the_sandbox(coding):
    # The sandbox's init ignores signals from inside its pid namespace.
    observation = run(coding, "import os; os.kill(os.getppid(), 9); print('alive')")
    assert observation.stdout == "alive\n" and observation.status == "ok"
    # kill(-1) reaches every process the program may signal: in its pid namespace, none but init.
    observation = run(coding, "import os, signal; os.kill(-1, signal.SIGKILL)")
    assert observation.status == "error" and "ProcessLookupError" in observation.stderr
    observation = run(coding, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert observation.status == "killed" and observation.message == "killed by signal SIGKILL"
    assert psutil.Process().is_running()


# --- resources -----------------------------------------------------------------


def test_allocating_10_gib_fails_inside(coding):
    observation = run(coding, "x = bytearray(10 << 30)")
    assert observation.status == "error" and "MemoryError" in observation.stderr


def test_growing_memory_stops_at_the_limit(coding):
    # Mappings count against the address-space limit before a page is touched (fast on a busy machine).
    observation = run(coding, "import mmap\nchunks = []\nwhile True:\n    chunks.append(mmap.mmap(-1, 128 << 20))")
    assert observation.status == "error" and "Cannot allocate memory" in observation.stderr


def test_infinite_loop_is_killed_at_the_wall_clock_limit(coding):
    started = time.monotonic()
    observation = run(coding, "while True:\n    pass", timeout=1.5)
    assert 1.4 < time.monotonic() - started < 8
    assert observation.status == "timeout" and "wall-clock limit of 1.5 s" in observation.message
    assert observation.exit_code == 128 + signal.SIGKILL  # as a shell reports a killed program


def test_printing_a_gigabyte_is_cut_off(coding):
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    started = time.monotonic()
    observation = run(coding, code)
    assert time.monotonic() - started < 10
    assert observation.status == "output_limit" and "output passed the limit" in observation.message
    assert observation.stdout.startswith("xxxx") and "[output truncated:" in observation.stdout
    assert len(observation.stdout) < (1 << 20) + 200


def test_huge_file_is_refused(coding):
    observation = run(coding, "open('big', 'wb').write(b'x' * (100 << 20))")
    assert observation.status != "ok"  # RLIMIT_FSIZE: SIGXFSZ or EFBIG


# --- budgets for the whole sandbox ------------------------------------------------

_FOUR_CHILDREN = """
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(300 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1  # touch every page: resident, not just reserved
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
print([os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) for k in kids])
"""


def test_memory_is_one_budget_for_all_processes_of_the_sandbox():
    env = CodingEnvironment(max_timeout=30, memory_mb=512)
    try:
        env.reset()
        # Four children of 300 MiB each: 1.2 GiB together, 300 MiB each.
        observation = run(env, _FOUR_CHILDREN, timeout=25)
        codes = eval(observation.stdout)
        if env.sandbox.budget is not None:
            assert codes.count(-9) >= 2, codes  # the OOM killer ends children inside the sandbox
            assert env.sandbox.budget.oom_kills() >= 2
        else:  # documented fallback (no writable cgroup): each process has the whole limit
            assert codes == [0, 0, 0, 0]
    finally:
        env.close()


def test_cgroup_v2_layout(tmp_path, monkeypatch):
    # This machine's memory controller is on cgroup v1, so v2 is exercised on a copy of
    # its file layout: which files get which limits, and that nothing is made without
    # the controllers (the kernel's own checks are not reproduced here).
    from gym_openenv.servers._sandbox import budget

    own = tmp_path / "server.slice"
    own.mkdir()
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("memory pids\n")
    monkeypatch.setattr(budget, "_ROOT", tmp_path)
    monkeypatch.setattr(budget, "_own_cgroup_v2", lambda: own)
    (own / "gym_openenv").mkdir()
    (own / "gym_openenv" / "cgroup.subtree_control").write_text("memory pids\n")
    made = budget.CgroupBudget.create("sandbox_a", 512 << 20, 16)
    assert made is not None and made.version == 2 and made.dirs == [own / "gym_openenv" / "sandbox_a"]
    group = made.dirs[0]
    assert (group / "memory.max").read_text() == str(512 << 20)
    assert (group / "memory.swap.max").read_text() == "0" and (group / "pids.max").read_text() == "16"
    made.admit(4242)
    assert (group / "cgroup.procs").read_text() == "4242"


def test_processes_are_one_budget_for_the_sandbox():
    env = CodingEnvironment(max_timeout=30, max_processes=16)
    try:
        env.reset()
        code = "import os, time\nn = 0\ntry:\n    for _ in range(64):\n        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)"
        started = int(run(env, code, timeout=10).stdout)
        assert started < 16  # the program itself and its children share the 16
    finally:
        env.close()


def test_the_workspace_is_size_limited_and_not_on_disk():
    env = CodingEnvironment(max_timeout=30, workspace_mb=64)
    try:
        env.reset()
        code = "import os\nwritten = 0\ntry:\n    for i in range(20):\n        with open(f'f{i}', 'wb') as f:\n            f.write(b'x' * (8 << 20))\n        written += 8\nexcept OSError as e:\n    print(e.strerror)\nprint(written)"
        observation = run(env, code, timeout=20)
        if env.sandbox.workspace_on_tmpfs:
            assert observation.stdout.splitlines() == ["No space left on device", "64"], observation.stdout
            assert os.path.ismount(env.sandbox.workspace)
        else:  # documented fallback: files are capped one by one, not in total
            assert observation.stdout.splitlines() == ["160"]
    finally:
        env.close()
    assert not env.sandbox.root.exists()


_CLIENT = """
import sys, gymnasium as gym, gym_openenv
env = gym.make("openenv/coding-v0", **({"url": sys.argv[1]} if len(sys.argv) > 1 else {}))
env.reset()
print(getattr(env.unwrapped._provider, "pid", None), flush=True)
env.step({"code": "open('/workspace/mid-step', 'wb').write(b'x' * (8 << 20))\\nimport time\\ntime.sleep(120)", "timeout": float(sys.argv[2]) if len(sys.argv) > 2 else 60.0})
"""


def _sandboxes_of(server_pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"gym_openenv_sandbox_pid{server_pid}_*"))


def _mounts_of(server_pid: int) -> list[str]:
    with open("/proc/mounts") as f:
        return [line for line in f if f"gym_openenv_sandbox_pid{server_pid}_" in line]


def _kill_mid_step(client: subprocess.Popen, server_pid: int) -> None:
    deadline = time.monotonic() + 120
    while not any(os.path.exists(os.path.join(d, "workspace", "mid-step")) for d in _sandboxes_of(server_pid)):
        assert client.poll() is None and time.monotonic() < deadline, client.stderr.read() if client.poll() is not None else "no step"
        time.sleep(0.1)
    client.kill()
    client.wait()


def _wait_until(condition, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_client_killed_mid_step_leaves_nothing_behind_its_own_server():
    client = subprocess.Popen([sys.executable, "-c", _CLIENT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server_pid = int(client.stdout.readline())
    _kill_mid_step(client, server_pid)
    assert _wait_until(lambda: not psutil.pid_exists(server_pid), 30)
    assert _sandboxes_of(server_pid) == [] and _mounts_of(server_pid) == []


def test_a_client_killed_mid_step_leaves_nothing_behind_on_a_shared_server():
    with LocalProcessProvider("gym_openenv.servers.coding.server.environment:CodingEnvironment") as server:
        client = subprocess.Popen([sys.executable, "-c", _CLIENT, server.base_url, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client.stdout.readline()
        _kill_mid_step(client, server.pid)
        # The step ends at its 3 s limit; then the session closes and its sandbox goes.
        assert _wait_until(lambda: _sandboxes_of(server.pid) == [], 30), _sandboxes_of(server.pid)
        assert _mounts_of(server.pid) == []
        assert httpx.get(server.base_url + "/health").json()["active_sessions"] == 0


def test_stopping_a_server_mid_step_leaves_nothing_behind():
    server = LocalProcessProvider("gym_openenv.servers.coding.server.environment:CodingEnvironment")
    server.start()
    try:
        with ws_connect(server.base_url.replace("http://", "ws://") + "/ws") as ws:  # OpenEnv's JSON session
            ws.send(json.dumps({"type": "reset"}))
            ws.recv()
            code = "open('/workspace/mid-step', 'wb').write(b'x')\nimport time\ntime.sleep(120)"
            ws.send(json.dumps({"type": "step", "data": {"code": code, "timeout": 50}}))
            deadline = time.monotonic() + 120
            while not any(os.path.exists(os.path.join(d, "workspace", "mid-step")) for d in _sandboxes_of(server.pid)):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            pid = server.pid
            server.stop()  # SIGTERM while the step sleeps in its sandbox
        assert _sandboxes_of(pid) == [] and _mounts_of(pid) == []
    finally:
        server.stop()


def test_a_new_sandbox_removes_those_of_servers_that_died():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tempfile.mkdtemp(prefix=f"gym_openenv_sandbox_pid{dead.pid}_")
    os.mkdir(os.path.join(orphan, "workspace"))
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", os.path.join(orphan, "workspace")]).returncode == 0
    env = CodingEnvironment()
    try:
        assert not os.path.exists(orphan)
        assert not mounted or _mounts_of(dead.pid) == []
        assert env.sandbox.root.exists()  # its own, and live servers' sandboxes, stay
    finally:
        env.close()


# --- secrets -------------------------------------------------------------------


def test_server_environment_variables_are_not_visible(monkeypatch):
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)
    env = CodingEnvironment()  # created while the secret is in the server's environment
    try:
        env.reset()
        code = "import os\nprint(dict(os.environ))\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n        print(open(f'/proc/{pid}/environ').read())"
        observation = run(env, code)
        assert SECRET_VALUE not in observation.stdout and SECRET_NAME not in observation.stdout
        assert "HOME" in observation.stdout  # the sandbox's own, minimal environment
    finally:
        env.close()


# --- the REPL keeps its interpreter through all this ----------------------------


def test_repl_background_process_is_killed_after_the_cell(repl):
    observation = run_cell(repl, "import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint('started')")
    assert observation.stdout == "started\n"
    assert run_cell(repl, "p.poll()").stdout == "-9\n"  # the interpreter survived; its child did not


def test_repl_fork_bomb_and_infinite_loop_are_contained(repl):
    run_cell(repl, "kept = 'state'")
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    observation = run_cell(repl, code, timeout=1.5)
    assert observation.status in ("timeout", "error", "cpu_limit") and observation.message
    observation = run_cell(repl, "while True:\n    pass", timeout=1)
    assert observation.status == "timeout" and "KeyboardInterrupt" in observation.stderr
    assert run_cell(repl, "kept").stdout in ("'state'\n", "")  # kept unless the fork bomb forced a restart


def test_repl_that_kills_itself_is_restarted(repl):
    observation = repl.step(ReplAction(code="import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert observation.status == "killed" and "fresh interpreter" in observation.message
    assert run_cell(repl, "1 + 1").stdout == "2\n"


def test_repl_cannot_see_the_server(repl):
    observation = run_cell(repl, f"import os\nprint(os.environ.get({SECRET_NAME!r}), os.path.exists('/work'), os.getuid())")
    assert observation.stdout == "None False 1000\n"


# --- through a real server process ---------------------------------------------


def test_attacks_through_gym_make(monkeypatch):
    monkeypatch.setenv(SECRET_NAME, SECRET_VALUE)  # the server process inherits it
    env = _make_coding()
    try:
        env.reset(seed=0)
        code = "import os, socket\nprint(os.environ.get('%s'))\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\nexcept OSError as e:\n    print('no network')" % SECRET_NAME
        observation, reward, terminated, truncated, info = env.step({"code": code, "timeout": 3.0})
        assert observation["stdout"] == "None\nno network\n"
        observation, *_ , info = env.step({"code": "while True:\n    pass", "timeout": 1.0})
        assert info["status"] == "timeout" and "killed" in observation["message"]
        observation, *_ = env.step({"code": "print('ok')", "timeout": 3.0})
        assert observation["stdout"] == "ok\n"
    finally:
        env.close()


def _make_coding() -> gym.Env:
    gym_openenv.registry.register_all()
    if "openenv/coding-v0" not in gym.registry:  # until registry.yaml lists coding
        gym.register(
            "openenv/coding-v0",
            entry_point=gym_openenv.registry.ENTRY_POINT,
            vector_entry_point=gym_openenv.registry.VECTOR_ENTRY_POINT,
            kwargs={"environment": "gym_openenv.servers.coding.server.environment:CodingEnvironment"},
        )
    return gym.make("openenv/coding-v0")
