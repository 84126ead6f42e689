"""Runs inside the sandbox: a persistent Python interpreter driven over two pipes.

``python3 -u driver.py <command fd> <reply fd>`` reads one JSON request per line,
``{"code": "...", "variables": {...}}``, runs it in one namespace that lives as
long as the process (like a notebook: a trailing expression's repr is printed),
and answers each with one JSON line ``{"ok": bool, "final": str | null}``, after a
``{"started": true}`` line when the cell begins (the server's wall-clock limit counts
from there). SIGINT stops a running cell and is ignored between cells, so an
interrupt that arrives before the cell starts can never cost the request. The
code's output goes to the real stdout/stderr, which the server streams.
``FINAL(answer)`` records the episode's answer. Standard library only.
"""

import ast
import builtins
import json
import linecache
import os
import signal
import sys
import traceback


class Interpreter:
    def __init__(self):
        self.namespace = {"__name__": "__main__", "__builtins__": builtins, "FINAL": self.final}
        self.answers = []
        self.cells = 0

    def final(self, answer):
        """Submit ``answer`` as the episode's answer (its ``str`` is compared)."""
        self.answers.append(str(answer))
        print(f"FINAL({answer})")

    def run(self, code: str) -> bool:
        """Run a cell; print a trailing expression's repr; print the traceback on error."""
        self.cells += 1
        name = f"<cell {self.cells}>"
        linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # interruptible from here on
            tree = ast.parse(code, name, "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, name, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), name, "eval"), self.namespace)
                if value is not None:
                    print(repr(value))
            return True
        except SystemExit:
            print("SystemExit ignored: the interpreter keeps running", file=sys.stderr)
            return False
        except BaseException as e:  # noqa: BLE001 - every error (KeyboardInterrupt included) is the cell's result
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
            return False

    def take_answer(self):
        answer = self.answers[-1] if self.answers else None
        self.answers.clear()
        return answer


def main() -> None:
    command_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    for fd in (command_fd, reply_fd):
        os.set_inheritable(fd, False)  # the agent's subprocesses must not hold the protocol pipes
    commands = os.fdopen(command_fd, "r", encoding="utf-8")
    interpreter = Interpreter()

    def reply(message):
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(reply_fd, (json.dumps(message) + "\n").encode())

    driver_pid = os.getpid()
    # Between cells an interrupt has nothing to stop: one meant for a cell that just
    # finished, or sent before this process got to run the next one, must not land
    # while a request is read or a reply written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reply({"ok": True, "ready": True})
    while True:
        line = commands.readline()
        if not line:
            return  # the server closed the pipe: the session is over
        request = json.loads(line)
        interpreter.namespace.update(request.get("variables", {}))
        reply({"started": True})
        ok = interpreter.run(request.get("code", ""))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.getpid() != driver_pid:
            os._exit(0)  # a child the cell forked: only the interpreter itself answers
        reply({"ok": ok, "final": interpreter.take_answer()})


if __name__ == "__main__":
    main()
