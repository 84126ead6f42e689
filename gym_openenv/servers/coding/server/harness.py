"""Runs inside the sandbox: load a solution, call its function on each test input.

``python3 harness.py <solution.py> <function name> <cases.json>`` runs the
solution as a module (its prints reach the agent), then prints
:data:`RESULTS_MARKER` and one JSON line per case: ``{"value": ...}`` or
``{"error": "..."}``. Only inputs enter the sandbox: the expected outputs stay
with the server, which compares. The solution's own prints during calls go to
stderr so they cannot mix with the results. Standard library only.
"""

import json
import runpy
import sys
import traceback

RESULTS_MARKER = "@@gym-openenv-test-results@@"


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def main() -> None:
    solution, function_name, cases_path = sys.argv[1:4]
    with open(cases_path) as f:
        cases = json.load(f)
    try:
        namespace = runpy.run_path(solution, run_name="solution")
    except BaseException:  # the solution failed to load: every case fails, the agent sees why
        traceback.print_exc()
        sys.exit(1)
    function = namespace.get(function_name)
    if not callable(function):
        print(f"the solution defines no function {function_name!r}", file=sys.stderr)
        sys.exit(1)
    results = sys.stdout
    sys.stdout = sys.stderr
    results.write(f"\n{RESULTS_MARKER}\n")
    results.flush()
    for case in cases:
        try:
            line = json.dumps({"value": function(*case["args"])}, default=_jsonable)
        except Exception as e:  # a failing case is a result, not the end of the run
            line = json.dumps({"error": f"{type(e).__name__}: {e}"})
        results.write(line + "\n")
        results.flush()


if __name__ == "__main__":
    main()
