"""Check upstream OpenEnv environments against issue 16's "done when", through remote-v0.

For each environment folder of an OpenEnv checkout (``envs/<name>``), the script
starts its server as upstream's Dockerfiles do (``uvicorn server.app:app`` from the
folder, the folder on ``PYTHONPATH``), then through
``gym.make("openenv/remote-v0", url=...)`` checks that

1. every required action field is part of the action space (or a constant that is always sent),
2. ``reset(seed=0)`` returns an observation inside the observation space,
3. 20 steps of ``env.action_space.sample()`` are accepted by the server,
4. ``gymnasium.utils.env_checker.check_env`` passes,
5. ``gym.make_vec("openenv/remote-v0", num_envs=k, url=...)`` steps (k = 4, or 1 where
   the server allows one session),

and prints one Markdown table row per environment (the table in docs/upstream_envs.md).

Usage::

    python scripts/check_upstream_envs.py /path/to/OpenEnv connect4_env maze_env ...
    python scripts/check_upstream_envs.py /path/to/OpenEnv --extra-path /tmp/upstream_deps atari_env

``--extra-path`` adds directories to the servers' ``PYTHONPATH`` (packages an
environment needs that are not ours); ``--src`` puts the checkout's own
``src/`` first, for environments that need a newer openenv-core than the installed one.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import httpx
from gymnasium.utils.env_checker import check_env

import gym_openenv  # noqa: F401  (registers openenv/remote-v0)
from gym_openenv.errors import CapacityReached, ConnectionLost
from gym_openenv.spaces import describe


@dataclass
class Args:
    checkout: Path
    envs: list[str]
    extra_path: list[str] = field(default_factory=list)
    src: bool = False
    steps: int = 20
    startup_timeout: float = 180.0


@dataclass
class Result:
    name: str
    action: str = ""
    observation: str = ""
    checks: dict[str, str] = field(default_factory=dict)

    def row(self) -> str:
        marks = " | ".join(self.checks.get(k, "—") for k in ("fields", "reset", "steps", "check_env", "make_vec"))
        return f"| {self.name} | `{self.action}` | `{self.observation}` | {marks} |"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_of(folder: Path, checkout: Path) -> tuple[Path, str]:
    """(working directory, ``module:app``) as the folder's Dockerfile runs its server:
    ``server.app:app`` from the folder, ``envs.<name>.server.app:app`` from the
    checkout, or ``<name>.server.app:app`` from ``envs/``."""
    dockerfile = folder / "server" / "Dockerfile"
    commands = [line for line in dockerfile.read_text(errors="replace").splitlines() if line.startswith("CMD")] if dockerfile.exists() else []
    found = re.search(r"([\w.]+):app\b", commands[-1]) if commands else None
    module = found.group(1) if found else "server.app"
    if module.startswith("envs."):
        return checkout, f"{module}:app"
    if module.startswith(f"{folder.name}."):
        return folder.parent, f"{module}:app"
    return folder, "server.app:app"


def start(folder: Path, args: Args) -> tuple[str, subprocess.Popen]:
    port = free_port()
    cwd, app = app_of(folder, args.checkout)
    path = [str(cwd), *args.extra_path]
    if args.src:
        path.insert(0, str(args.checkout / "src"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-800:])
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("no /health answer")


def short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return text[:160]


def check(name: str, url: str, args: Args) -> Result:
    result = Result(name)
    schema = httpx.get(f"{url}/schema", timeout=30).json()
    required = set(schema["action"].get("required", []))
    env = gym.make("openenv/remote-v0", url=url)
    try:
        result.action, result.observation = describe(env.action_space)[:90], describe(env.observation_space)[:90]
        schema_of = getattr(env.unwrapped, "schema", None)
        if schema_of is None:  # an MCP tool environment: its actions are tool calls
            result.checks["fields"] = f"tool env ({type(env.unwrapped).__name__})"
        else:
            spec = schema_of.action
            sendable = {f.name for f in spec.space_fields} | set(spec.constants)
            lacking = sorted(required - sendable)
            result.checks["fields"] = "yes" if not lacking else f"missing {lacking}"
        obs, info = env.reset(seed=0)
        result.checks["reset"] = "yes" if env.observation_space.contains(obs) else "outside the space"
        env.action_space.seed(0)
        try:
            for i in range(args.steps):
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    env.reset()
            result.checks["steps"] = f"{args.steps}/{args.steps}"
        except Exception as e:  # noqa: BLE001 -- reported in the table
            result.checks["steps"] = f"{i}/{args.steps}: {short_error(e)}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    check_env(env.unwrapped)
                    result.checks["check_env"] = "passes"
                except (CapacityReached, ConnectionLost):  # its render check makes a second env while this one is open
                    check_env(env.unwrapped, skip_render_check=True)
                    result.checks["check_env"] = "passes without the render check (one session allowed)"
        except Exception as e:  # noqa: BLE001
            result.checks["check_env"] = short_error(e)
    finally:
        env.close()
    for k in (4, 1):  # k = 1 where the server allows one session (upstream's default)
        envs = None
        try:
            envs = gym.make_vec("openenv/remote-v0", url=url, num_envs=k)
            envs.reset(seed=0)
            for _ in range(5):
                envs.step(envs.action_space.sample())
            result.checks["make_vec"] = f"k={k} steps"
            break
        except (CapacityReached, ConnectionLost) as e:
            result.checks["make_vec"] = f"k={k}: {short_error(e)}"
        except Exception as e:  # noqa: BLE001
            result.checks["make_vec"] = f"k={k}: {short_error(e)}"
            break
        finally:
            if envs is not None:
                envs.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("envs", nargs="+")
    parser.add_argument("--extra-path", action="append", default=[])
    parser.add_argument("--src", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = Args(**vars(parser.parse_args()))
    print("| environment | action space | observation space | required fields | reset in space | sampled steps | check_env | make_vec |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.envs:
        try:
            url, process = start(args.checkout / "envs" / name, args)
        except Exception as e:  # noqa: BLE001
            print(f"| {name} | server did not start: {short_error(e)} | | | | | | |", flush=True)
            continue
        try:
            print(check(name, url, args).row(), flush=True)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            print(f"| {name} | {short_error(e)} | | | | | | |", flush=True)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
