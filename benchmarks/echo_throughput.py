"""Echo steps per second against the number of environments, side by side.

Every contender steps ``num_envs`` echo sessions with the message "hello";
a step of N envs counts N steps.

* ``gym_openenv``: ``gym.make_vec("openenv/echo-v0", num_envs=N)``: servers in
  child processes (one per core), batched binary protocol;
* ``gym_openenv_1server``: the same with every session on one server process
  (echo's steps are so cheap that a second server mostly adds messages);
* ``gym_openenv_openenv_ws``: the same vector env forced onto the plain OpenEnv
  protocol (one JSON WebSocket session per env), the fallback path;
* ``gymnasium_sync`` / ``gymnasium_async``: gymnasium's SyncVectorEnv and
  AsyncVectorEnv over the same environment logic run natively
  (:class:`gym_openenv.inprocess.InProcessEnv`); async only up to
  ``--max-async`` envs (one process each);
* ``openenv_client``: OpenEnv's reference client (openenv-core
  ``GenericEnvClient``), one session per env, all awaited concurrently on one
  event loop, against servers started the same way.

    python benchmarks/echo_throughput.py                  # 2 s per point
    python benchmarks/echo_throughput.py --seconds 5 --num-envs 1,16,64,256

It also times opening sessions: ``gym.make_vec("openenv/remote-v0", urls=...,
num_envs=N)`` for ``--open`` sessions against servers already running (the
cost on top of starting the server processes).

Writes benchmarks/results/echo_throughput.{json,png}; prints steps/s and ratios.
"""

import argparse
import asyncio
import os
import time

import gymnasium as gym
from openenv.core.generic_client import GenericEnvClient
from tqdm import tqdm

import gym_openenv  # noqa: F401
from benchmarks.harness import plot_rates, print_table, rate, write_results
from gym_openenv.inprocess import InProcessEnv
from gym_openenv.providers import LocalProcessProvider

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"
CONTENDERS = ("gym_openenv", "gym_openenv_1server", "gym_openenv_openenv_ws", "gymnasium_sync", "gymnasium_async", "openenv_client")


def bench_vector(envs, n: int, seconds: float) -> float:
    actions = ("hello",) * n
    envs.reset(seed=0)
    try:
        return rate(lambda: envs.step(actions), n, seconds)
    finally:
        envs.close()


def bench_openenv_client(n: int, seconds: float, num_servers: int) -> float:
    servers = [LocalProcessProvider(ECHO, server_args=["--max-sessions", "1024"]) for _ in range(num_servers)]
    try:
        urls = [s.start() for s in servers]

        async def run() -> float:
            clients = [GenericEnvClient(base_url=urls[i % len(urls)], message_timeout_s=120) for i in range(n)]
            await asyncio.gather(*(c.connect() for c in clients))
            await asyncio.gather(*(c.reset() for c in clients))

            async def step_all() -> None:
                await asyncio.gather(*(c.step({"message": "hello"}) for c in clients))

            loop = asyncio.get_running_loop()
            for _ in range(3):
                await step_all()
            steps, start = 0, loop.time()
            while (elapsed := loop.time() - start) < seconds:
                await step_all()
                steps += n
            await asyncio.gather(*(c.close() for c in clients))
            return steps / elapsed

        return asyncio.run(run())
    finally:
        for s in servers:
            s.stop()


def bench_open(n: int, num_servers: int) -> float:
    """Seconds for make_vec to open ``n`` sessions on servers that are already up."""
    servers = [LocalProcessProvider(ECHO, server_args=["--max-sessions", str(n)]) for _ in range(num_servers)]
    try:
        urls = [s.start() for s in servers]
        start = time.perf_counter()
        envs = gym.make_vec("openenv/remote-v0", num_envs=n, urls=urls)
        elapsed = time.perf_counter() - start
        envs.close()
        return elapsed
    finally:
        for s in servers:
            s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", default="1,4,16,64,256", help="comma-separated env counts")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per point")
    parser.add_argument("--max-async", type=int, default=64, help="largest AsyncVectorEnv (one process per env)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--open", type=int, default=1000, help="sessions to open for the opening time (0: skip)")
    args = parser.parse_args()
    counts = [int(x) for x in args.num_envs.split(",")]
    contenders = args.contenders.split(",")
    num_servers = os.cpu_count() or 1
    make_native = lambda: InProcessEnv(ECHO)  # noqa: E731
    rows = []
    jobs = [(c, n) for n in counts for c in contenders if not (c == "gymnasium_async" and n > args.max_async)]
    for contender, n in tqdm(jobs, desc="echo throughput", unit="point"):
        if contender == "gym_openenv":
            value = bench_vector(gym.make_vec("openenv/echo-v0", num_envs=n), n, args.seconds)
        elif contender == "gym_openenv_1server":
            value = bench_vector(gym.make_vec("openenv/echo-v0", num_envs=n, num_servers=1), n, args.seconds)
        elif contender == "gym_openenv_openenv_ws":
            value = bench_vector(gym.make_vec("openenv/echo-v0", num_envs=n, protocol="openenv"), n, args.seconds)
        elif contender == "gymnasium_sync":
            value = bench_vector(gym.vector.SyncVectorEnv([make_native] * n), n, args.seconds)
        elif contender == "gymnasium_async":
            value = bench_vector(gym.vector.AsyncVectorEnv([make_native] * n), n, args.seconds)
        else:
            value = bench_openenv_client(n, args.seconds, min(num_servers, n))
        rows.append({"contender": contender, "num_envs": n, "steps_per_s": value})
    print_table(rows, baseline="gym_openenv")
    per_step_us = {r["num_envs"]: 1e6 / r["steps_per_s"] for r in rows if r["contender"] == "gym_openenv"}
    print("gym_openenv cost per step (us):", {n: round(v, 1) for n, v in per_step_us.items()})
    if args.open:
        seconds = bench_open(args.open, num_servers)
        print(f"opening {args.open} sessions on {num_servers} running servers: {seconds:.2f} s")
        rows.append({"contender": "gym_openenv_open", "num_envs": args.open, "open_seconds": seconds})
    write_results("echo_throughput", vars(args), rows)
    print("plot:", plot_rates("echo_throughput", "echo: steps/s vs num_envs (2 cores)", rows))


if __name__ == "__main__":
    main()
