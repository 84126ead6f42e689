"""What the sandbox costs: executions/s of a trivial snippet and REPL steps/s.

Contenders, all running ``pass`` (or ``x = 1`` in the REPL):

* ``python_unsandboxed``: ``subprocess.run([python3, "-c", "pass"])``: the floor
  any one-shot execution pays (interpreter start), no isolation at all;
* ``sandbox_raw``: :class:`servers._sandbox.Sandbox` alone: bwrap with every
  namespace unshared, rlimits launcher, output capture, cleanup sweep;
* ``coding_inprocess``: ``CodingEnvironment.step`` (the above plus the
  environment's bookkeeping);
* ``coding_gym_make``: ``gym.make("openenv/coding-v0")`` through a server process;
* ``repl_inprocess`` / ``repl_gym_make``: one cell in the persistent
  interpreter, in-process and through a server process.

    python -m benchmarks.sandbox_throughput               # 3 s per contender
    python -m benchmarks.sandbox_throughput --seconds 10

Writes benchmarks/results/sandbox_throughput.json; prints the rates.
"""

import argparse
import subprocess

import gymnasium as gym

import gym_openenv.registry
from benchmarks.harness import rate, write_results
from servers._sandbox import Sandbox, find_python
from servers.coding.models import CodeAction
from servers.coding.server.environment import CodingEnvironment
from servers.repl.models import ReplAction
from servers.repl.server.environment import ReplEnvironment

ENVIRONMENTS = {
    "coding": "servers.coding.server.environment:CodingEnvironment",
    "repl": "servers.repl.server.environment:ReplEnvironment",
}


def bench_python_unsandboxed(seconds: float) -> float:
    python = find_python()
    return rate(lambda: subprocess.run([python, "-c", "pass"], check=True), 1, seconds)


def bench_sandbox_raw(seconds: float) -> float:
    sandbox = Sandbox()

    def once() -> None:
        run = sandbox.start([sandbox.python, "-u", "-c", "pass"])
        try:
            for execution in run.stream(timeout=10):
                pass
        finally:
            run.close()
        assert execution.status.value == "ok", execution

    try:
        return rate(once, 1, seconds)
    finally:
        sandbox.close()


def bench_inprocess(env, action, seconds: float) -> float:
    env.reset()
    try:
        return rate(lambda: env.step(action), 1, seconds)
    finally:
        env.close()


def bench_gym_make(name: str, code: str, seconds: float) -> float:
    gym_openenv.registry.register_all()
    env_id = f"openenv/{name}-v0"
    if env_id not in gym.registry:  # until registry.yaml lists it
        gym.register(env_id, entry_point=gym_openenv.registry.ENTRY_POINT, kwargs={"environment": ENVIRONMENTS[name]})
    env = gym.make(env_id)
    env.reset(seed=0)
    try:
        return rate(lambda: env.step({"code": code, "timeout": 10.0}), 1, seconds)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per contender")
    args = parser.parse_args()
    contenders = {
        "python_unsandboxed": lambda: bench_python_unsandboxed(args.seconds),
        "sandbox_raw": lambda: bench_sandbox_raw(args.seconds),
        "coding_inprocess": lambda: bench_inprocess(CodingEnvironment(), CodeAction(code="pass"), args.seconds),
        "coding_gym_make": lambda: bench_gym_make("coding", "pass", args.seconds),
        "repl_inprocess": lambda: bench_inprocess(ReplEnvironment(), ReplAction(code="x = 1"), args.seconds),
        "repl_gym_make": lambda: bench_gym_make("repl", "x = 1", args.seconds),
    }
    rows = []
    for name, bench in contenders.items():
        per_second = bench()
        rows.append({"contender": name, "per_s": round(per_second, 1), "ms_each": round(1000 / per_second, 2)})
        print(f"{name:20s} {per_second:8.1f}/s  {1000 / per_second:7.2f} ms each", flush=True)
    path = write_results("sandbox_throughput", {"seconds": args.seconds}, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
