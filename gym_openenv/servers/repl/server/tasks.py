"""REPL tasks: a long ``context`` to explore with code, a question, one right answer.

Each task is a generator ``(rng) -> ReplTask``, so every seed gives a new
instance and no instance can be memorized. Contexts are tens to hundreds of
kilobytes: too long to read, easy to analyse with a few lines of Python.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TASKS", "ReplTask", "answers_match"]


@dataclass(frozen=True)
class ReplTask:
    id: str
    question: str
    context: str
    #: What ``context`` holds, for the statement.
    description: str
    answer: str

    def statement(self) -> str:
        return (
            f"{self.question}\n\nThe variable `context` holds {self.description} "
            f"({len(self.context)} characters). Explore it with Python (state persists "
            f"between steps), then submit with FINAL(answer)."
        )


_WORDS = (
    "river mountain lantern orchard copper window silence harbor meadow thunder garden "
    "pencil marble canyon violet journey compass feather ember glacier horizon island "
    "jasmine kettle ladder mirror nectar oyster pebble quartz saddle timber umbrella "
    "velvet walnut yonder zephyr anchor bramble cobalt dagger falcon granite hollow"
).split()


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(6, 14))
    return " ".join(words).capitalize() + "."


def needle(rng: random.Random) -> ReplTask:
    code = f"{rng.randrange(10**6):06d}"
    lines = [_sentence(rng) for _ in range(4000)]
    decoys = [f"The access code was rotated; the old code {rng.randrange(10**6):06d} is void." for _ in range(3)]
    for decoy in decoys:
        lines.insert(rng.randrange(len(lines)), decoy)
    lines.insert(rng.randrange(len(lines)), f"The current access code is {code}.")
    return ReplTask(
        "needle",
        "What is the current access code mentioned in `context`? Answer with the six digits.",
        "\n".join(lines),
        "a long text, one sentence per line",
        code,
    )


def log_errors(rng: random.Random) -> ReplTask:
    services = ["auth", "payments", "search", "billing", "gateway"]
    levels = ["DEBUG", "INFO", "INFO", "WARN", "ERROR"]
    target = rng.choice(services)
    lines, count = [], 0
    for i in range(6000):
        service, level = rng.choice(services), rng.choice(levels)
        count += service == target and level == "ERROR"
        stamp = f"2025-03-{1 + i // 400:02d}T{(i // 17) % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"
        lines.append(f"{stamp} {level:<5} [{service}] request {rng.randrange(10**8):08x} took {rng.randint(1, 900)}ms")
    return ReplTask(
        "log_errors",
        f"How many ERROR lines in the log come from the service '{target}'?",
        "\n".join(lines),
        "a service log, one line per event: timestamp, level, [service], message",
        str(count),
    )


def csv_revenue(rng: random.Random) -> ReplTask:
    regions = ["north", "south", "east", "west"]
    products = ["widget", "gadget", "doohickey", "gizmo", "sprocket"]
    target = rng.choice(regions)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["order_id", "region", "product", "quantity", "unit_price"])
    total_cents = 0
    for order in range(3000):
        region, quantity, cents = rng.choice(regions), rng.randint(1, 20), rng.randint(99, 9999)
        if region == target:
            total_cents += quantity * cents
        writer.writerow([order + 1000, region, rng.choice(products), quantity, f"{cents / 100:.2f}"])
    return ReplTask(
        "csv_revenue",
        f"What is the total revenue (sum of quantity * unit_price) of the orders in region '{target}'? "
        "Answer with two decimals.",
        out.getvalue(),
        "a CSV table of orders with a header row",
        f"{total_cents / 100:.2f}",
    )


def json_top_user(rng: random.Random) -> ReplTask:
    teams = ["red", "blue", "green", "gold"]
    target = rng.choice(teams)
    users = [
        {"name": f"user_{i:04d}", "team": rng.choice(teams), "score": rng.randint(0, 9999), "active": rng.random() < 0.8}
        for i in range(1500)
    ]
    best = max((u for u in users if u["team"] == target), key=lambda u: u["score"])
    best["score"] = 10000 + rng.randint(0, 99)  # a unique maximum
    return ReplTask(
        "json_top_user",
        f"Which user (give the name) in team '{target}' has the highest score?",
        json.dumps({"generated": "2025-03-01", "users": users}),
        'a JSON document: {"users": [{"name", "team", "score", "active"}, ...]}',
        best["name"],
    )


def word_frequency(rng: random.Random) -> ReplTask:
    long_words = [w for w in _WORDS if len(w) >= 7]
    favourite = rng.choice(long_words)
    lines = [_sentence(rng) for _ in range(2500)]
    lines += [f"{favourite.capitalize()} again." for _ in range(60)]
    rng.shuffle(lines)
    counts = Counter(w.strip(".").lower() for line in lines for w in line.split())
    answer = max((w for w in counts if len(w) >= 7), key=lambda w: (counts[w], w))
    return ReplTask(
        "word_frequency",
        "Which word of at least 7 letters appears most often in `context` (case-insensitive)?",
        "\n".join(lines),
        "a long text, one sentence per line",
        answer,
    )


#: Task id -> generator.
TASKS: dict[str, Callable[[random.Random], ReplTask]] = {
    "needle": needle,
    "log_errors": log_errors,
    "csv_revenue": csv_revenue,
    "json_top_user": json_top_user,
    "word_frequency": word_frequency,
}


def answers_match(given: str, expected: str) -> bool:
    """Case-, quote- and whitespace-insensitive; numbers compare as numbers."""
    def norm(s: str) -> str:
        return s.strip().strip("'\"`").strip().rstrip(".").strip().casefold()

    given, expected = norm(given), norm(expected)
    try:
        return math.isclose(float(given), float(expected), rel_tol=0, abs_tol=1e-6)
    except ValueError:
        return given == expected
