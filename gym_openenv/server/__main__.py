"""Run an environment server: ``python -m gym_openenv.server MODULE:CLASS``.

``MODULE:APP@FOLDER`` serves an OpenEnv environment folder's own app as it was
built (``server.app:app@/tmp/maze_env``), from the folder, as ``uvicorn`` would.

Binds before it starts serving and prints one line, ``OPENENV_LISTENING
<url>``, so a parent that asked for port 0 learns the port without racing.
With ``--parent-pid`` it exits when that process dies (no orphans, even
after ``kill -9`` of the parent).
"""

import argparse
import asyncio
import atexit
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import psutil
import uvicorn

from gym_openenv.manifest import import_object, split_target
from gym_openenv.server.app import create_app, env_kwargs_from_environ
from gym_openenv.server.host import ServerSettings
from gym_openenv.server.limits import http_protocol

LISTENING = "OPENENV_LISTENING"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gym_openenv.server", description=__doc__.splitlines()[0])
    p.add_argument("environment", help="the Environment class, as module:Class")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one")
    p.add_argument("--uds", help="serve on this Unix socket path instead of TCP")
    p.add_argument("--env-kwargs", help="JSON object of environment arguments (default: $OPENENV_ENV_KWARGS)")
    p.add_argument("--max-sessions", type=int)
    p.add_argument("--idle-timeout", type=float, help="seconds before an idle session is closed (0: never)")
    p.add_argument("--step-timeout", type=float, help="seconds an environment call may take (0: no limit)")
    p.add_argument("--workers-per-client", type=int, help="environment calls one connection may have running, hung ones included (default 4)")
    p.add_argument("--workers", type=int, help="worker threads in all (default: max sessions x workers per client)")
    p.add_argument("--header-timeout", type=float, help="seconds a client has to send a request's head (default 10)")
    p.add_argument("--body-timeout", type=float, help="seconds a request body may stall (default 30)")
    p.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle HTTP keep-alive connection stays open")
    p.add_argument("--max-message-bytes", type=int, help="largest request body or WebSocket message")
    p.add_argument("--web", action="store_true", default=None, help="serve the /web page to play and debug (default: $OPENENV_WEB)")
    p.add_argument(
        "--direct-socket", default=os.environ.get("OPENENV_DIRECT_SOCKET", "auto"),
        help="Unix socket of the direct transport for clients on this machine: a path, 'auto' "
        "(beside --uds, else a private temporary folder) or 'off' (default: $OPENENV_DIRECT_SOCKET or auto)",
    )
    p.add_argument(
        "--cpu-policy", choices=("batch", "normal"), default=os.environ.get("OPENENV_CPU_POLICY", "normal"),
        help="Linux scheduling policy: 'normal', or 'batch' (SCHED_BATCH: a woken server does not preempt the "
        "client that woke it, which may have more requests to send; on a machine with nothing else to run. "
        "Default: $OPENENV_CPU_POLICY or normal)",
    )
    p.add_argument("--parent-pid", type=int, help="exit when this process dies")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


def _bind(args: argparse.Namespace) -> tuple[socket.socket, str]:
    if args.uds:
        with_dir = os.path.dirname(os.path.abspath(args.uds))
        os.makedirs(with_dir, exist_ok=True)
        if os.path.exists(args.uds):
            os.unlink(args.uds)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.uds)
        url = f"http+unix://{args.uds}"
    else:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
        url = f"http://{shown}:{port}"
    sock.listen(2048)
    return sock, url


def _direct_socket_path(args: argparse.Namespace) -> str | None:
    if args.direct_socket == "off":
        return None
    if args.direct_socket != "auto":
        return args.direct_socket
    if args.uds and len(os.path.abspath(args.uds)) < 90:  # Unix socket paths end at 107 bytes
        return os.path.abspath(args.uds) + ".direct"  # beside it: a sandbox shares that folder, not its /tmp
    folder = tempfile.mkdtemp(prefix="gym-openenv-direct-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.path.join(folder, "server.sock")


def _exit_with_parent(parent_pid: int, server: uvicorn.Server) -> None:
    while True:
        time.sleep(0.25)
        if os.getppid() != parent_pid:
            # No one waits for results any more: end the environments' own processes
            # (sandboxes, browsers) first, so running steps return and every session
            # closes cleanly (a sandbox's files go with it).
            _kill_descendants()
            server.should_exit = True
            time.sleep(8.0)  # grace for a clean shutdown, then make sure
            if os.getpgrp() == os.getpid():  # our own group: take its children too
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(1)


def _kill_descendants() -> None:
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass  # ended by itself


def _set_cpu_policy(policy: str) -> None:
    """SCHED_BATCH for this thread and every thread and process started after it (they inherit it).

    On an idle machine it helps a little: a client that wakes a server (sends it a request)
    is otherwise preempted by it at once (a vector env sending to two servers measured ~240 us
    per send, instead of ~30 us). Beside other CPU-bound work (a learner, other jobs) it costs
    much more: a woken batch server waits out their time slices, and make_vec(4) on Atari fell
    from 0.97x to 0.58x of gymnasium's AsyncVectorEnv with two busy loops running. Hence opt-in.
    """
    if policy == "batch" and hasattr(os, "SCHED_BATCH"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:  # not allowed here (a seccomp profile, say): the normal policy serves too
            pass


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _set_cpu_policy(args.cpu_policy)  # first: threads started from here on inherit it
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else env_kwargs_from_environ()
    settings = ServerSettings.from_environ(
        max_sessions=args.max_sessions,
        idle_timeout=args.idle_timeout,
        step_timeout=args.step_timeout,
        workers_per_client=args.workers_per_client,
        workers=args.workers,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_message_bytes=args.max_message_bytes,
        web=args.web,
        direct_socket=_direct_socket_path(args),
    )
    folder = split_target(args.environment)[1]
    if folder is not None:
        os.chdir(folder)  # an OpenEnv folder's app runs from the folder (it may read files beside it)
    target = import_object(args.environment)
    # An app gym_openenv's create_app built is rebuilt, so arguments and settings apply to it too.
    host = getattr(getattr(target, "state", None), "host", None)
    env_cls = target if isinstance(target, type) else getattr(host, "env_cls", None)
    if env_cls is not None:
        app = create_app(env_cls, env_kwargs, settings)
        # Build one instance before listening: bad arguments fail here, with a
        # traceback the parent shows, instead of on the first client's request.
        asyncio.run(app.state.host.specs())
        # This process owns its children: at shutdown, steps still running (a sandbox, a
        # browser) are ended through their processes, so every session closes cleanly.
        app.state.stop_environment_processes = _kill_descendants
    elif env_kwargs:
        raise SystemExit(f"{args.environment} is a ready app; it takes no environment arguments (got {sorted(env_kwargs)})")
    else:
        app = target
    sock, url = _bind(args)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        ws_max_size=settings.max_message_bytes,
        http=http_protocol(settings.header_timeout),
        timeout_keep_alive=args.keep_alive,
        ws_ping_interval=20.0,
        ws_ping_timeout=60.0,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid, server), daemon=True).start()
    print(f"{LISTENING} {url}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
