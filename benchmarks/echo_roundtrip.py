"""Single-session echo round trips per second: gym_openenv vs OpenEnv's client.

Both talk to the same echo server process, one request at a time:

* ``gym_openenv``: ``gym.make("openenv/remote-v0", url=...)``, ``env.step("hello")``
  (the batched binary protocol, a batch of one);
* ``gym_openenv_json``: the same env forced onto OpenEnv's JSON protocol
  (``protocol="openenv"``), the path taken against foreign servers;
* ``openenv_client``: OpenEnv's ``GenericEnvClient`` (openenv-core), sync wrapper;
* ``openenv_client_async``: the same client awaited on its own event loop.

    python benchmarks/echo_roundtrip.py [--seconds 3]
"""

import argparse
import asyncio

import gymnasium as gym
from openenv.core.generic_client import GenericEnvClient

import gym_openenv  # noqa: F401
from benchmarks.harness import rate, write_results
from gym_openenv.providers import LocalProcessProvider

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per contender")
    args = parser.parse_args()
    rows = []
    with LocalProcessProvider(ECHO) as server:
        env = gym.make("openenv/remote-v0", url=server.base_url)
        env.reset()
        rows.append({"contender": "gym_openenv", "round_trips_per_s": rate(lambda: env.step("hello"), 1, args.seconds)})
        env.close()
        env = gym.make("openenv/remote-v0", url=server.base_url, protocol="openenv")
        env.reset()
        rows.append({"contender": "gym_openenv_json", "round_trips_per_s": rate(lambda: env.step("hello"), 1, args.seconds)})
        env.close()

        client = GenericEnvClient(base_url=server.base_url).sync()
        with client:
            client.reset()
            rows.append({"contender": "openenv_client", "round_trips_per_s": rate(lambda: client.step({"message": "hello"}), 1, args.seconds)})

        async def run_async() -> float:
            async with GenericEnvClient(base_url=server.base_url) as c:
                await c.reset()
                n = 0
                start = asyncio.get_running_loop().time()
                while (elapsed := asyncio.get_running_loop().time() - start) < args.seconds:
                    await c.step({"message": "hello"})
                    n += 1
                return n / elapsed

        rows.append({"contender": "openenv_client_async", "round_trips_per_s": asyncio.run(run_async())})
    base = next(r["round_trips_per_s"] for r in rows if r["contender"] == "openenv_client")
    for row in rows:
        print(f"{row['contender']:>22}: {row['round_trips_per_s']:8,.0f} round trips/s ({row['round_trips_per_s'] / base:4.2f}x openenv_client)")
    write_results("echo_roundtrip", vars(args), rows)


if __name__ == "__main__":
    main()
