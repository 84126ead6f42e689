"""What the sandbox costs: executions/s of a trivial snippet and REPL steps/s.

Contenders, all running ``pass`` (or ``x = 1`` in the REPL):

* ``python_unsandboxed``: ``subprocess.run([python3, "-c", "pass"])``: the floor
  any one-shot execution pays (interpreter start), no isolation at all;
* ``sandbox_raw``: :class:`gym_openenv.servers._sandbox.Sandbox` alone: bwrap with every
  namespace unshared, prlimit, output capture, the cleanup sweep;
* ``coding_inprocess``: ``CodingEnvironment.step`` (the above plus the
  environment's bookkeeping);
* ``coding_gym_make``: ``gym.make("openenv/coding-v0")`` through a server process;
* ``repl_inprocess`` / ``repl_gym_make``: one cell in the persistent
  interpreter, in-process and through a server process.

The machine is shared, so contenders take turns: ``--rounds`` rounds of
``--seconds`` each, and each contender reports its best round.

    python -m benchmarks.sandbox_throughput                   # 3 rounds of 2 s
    python -m benchmarks.sandbox_throughput --rounds 5 --seconds 4

Writes benchmarks/results/sandbox_throughput.json; prints the rates.
"""

import argparse
import subprocess
from collections.abc import Callable
from contextlib import ExitStack

import gymnasium as gym

import gym_openenv.registry
from benchmarks.harness import rate, write_results
from gym_openenv.servers._sandbox import Sandbox, find_python
from gym_openenv.servers.coding.models import CodeAction
from gym_openenv.servers.coding.server.environment import CodingEnvironment
from gym_openenv.servers.repl.models import ReplAction
from gym_openenv.servers.repl.server.environment import ReplEnvironment

ENVIRONMENTS = {
    "coding": "gym_openenv.servers.coding.server.environment:CodingEnvironment",
    "repl": "gym_openenv.servers.repl.server.environment:ReplEnvironment",
}


def python_unsandboxed(stack: ExitStack) -> Callable[[], object]:
    python = find_python()
    return lambda: subprocess.run([python, "-c", "pass"], check=True)


def sandbox_raw(stack: ExitStack) -> Callable[[], object]:
    sandbox = Sandbox()
    stack.callback(sandbox.close)

    def once() -> None:
        run = sandbox.start([sandbox.python, "-u", "-c", "pass"])
        try:
            for execution in run.stream(timeout=10):
                pass
        finally:
            run.close()
        if execution.status.value != "ok":
            raise RuntimeError(f"the trivial run failed: {execution}")

    return once


def inprocess(env_class, action) -> Callable[[ExitStack], Callable[[], object]]:
    def make(stack: ExitStack) -> Callable[[], object]:
        env = env_class()
        stack.callback(env.close)
        env.reset()
        return lambda: env.step(action)

    return make


def through_gym_make(name: str, code: str) -> Callable[[ExitStack], Callable[[], object]]:
    def make(stack: ExitStack) -> Callable[[], object]:
        gym_openenv.registry.register_all()
        env_id = f"openenv/{name}-v0"
        if env_id not in gym.registry:  # until registry.yaml lists it
            gym.register(env_id, entry_point=gym_openenv.registry.ENTRY_POINT, kwargs={"environment": ENVIRONMENTS[name]})
        env = gym.make(env_id)
        stack.callback(env.close)
        env.reset(seed=0)
        return lambda: env.step({"code": code, "timeout": 10.0})

    return make


CONTENDERS = {
    "python_unsandboxed": python_unsandboxed,
    "sandbox_raw": sandbox_raw,
    "coding_inprocess": inprocess(CodingEnvironment, CodeAction(code="pass")),
    "coding_gym_make": through_gym_make("coding", "pass"),
    "repl_inprocess": inprocess(ReplEnvironment, ReplAction(code="x = 1")),
    "repl_gym_make": through_gym_make("repl", "x = 1"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per contender per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each contender reports its best")
    args = parser.parse_args()
    with ExitStack() as stack:
        steps = {name: make(stack) for name, make in CONTENDERS.items()}
        best = dict.fromkeys(steps, 0.0)
        for _ in range(args.rounds):
            for name, step in steps.items():
                best[name] = max(best[name], rate(step, 1, args.seconds))
    rows = [{"contender": n, "per_s": round(r, 1), "ms_each": round(1000 / r, 2)} for n, r in best.items()]
    for row in rows:
        print(f"{row['contender']:20s} {row['per_s']:8.1f}/s  {row['ms_each']:7.2f} ms each")
    path = write_results("sandbox_throughput", vars(args), rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
