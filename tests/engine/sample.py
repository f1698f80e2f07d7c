"""Systems under test for the engine tests (importable by Ray workers as tests.engine.sample)."""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hypermetric as hm


def echo_id(output: str, id: int) -> float:
    """The example id the output claims, so a test can see each score sits on its example."""
    return float(output.split(":")[1]) - float(id)


def exact(output: str, answer: str) -> float:
    return float(output == answer)


def mixed(output: str, id: int) -> Any:
    """Returns a number, a dict, None or a string depending on the example."""
    kind = id % 4
    if kind == 0:
        return 1.0
    if kind == 1:
        return {"a": 1, "b": True}
    if kind == 2:
        return None
    return "not a number"


def crash_evaluator_once(output: str, example: dict) -> float:
    """Kills the evaluator process the first time it sees the marked example."""
    marker = example.get("crash_marker")
    if marker and not Path(marker).exists():
        Path(marker).write_text("crashed")
        os._exit(1)
    return 1.0


@hm.component(evals=[echo_id, exact])
def answer(question: str, id: int) -> str:
    return f"{question}:{id}"


@hm.component(evals=[crash_evaluator_once])
def steady(question: str) -> str:
    return question


@hm.component(evals=[mixed])
def shaky(id: int) -> str:
    if id % 10 == 9:
        raise ValueError(f"example {id} is broken")
    return str(id)


@hm.component(evals=[exact])
def opaque(question: str) -> Any:
    if question.endswith("7"):
        return threading.Lock()  # cannot cross a process boundary
    return question


def rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": i, "question": f"q{i}", "answer": f"q{i}:{i}", **extra} for i in range(n)]


@hm.runtime(name="engine-basic", dataset=rows(1000), version="v1")
def basic(example: dict) -> str:
    return answer(example["question"], example["id"])


@hm.runtime(name="engine-crash-evaluator", dataset=None, max_error_rate=0.0)
def crash_evaluator(example: dict) -> str:
    return steady(example["question"])


@hm.runtime(name="engine-crash-worker", dataset=None)
def crash_worker(example: dict) -> str:
    marker = example.get("worker_marker")
    if marker and not Path(marker).exists():
        Path(marker).write_text("crashed")
        os._exit(1)
    return answer(example["question"], example["id"])


@hm.runtime(name="engine-crash-always", dataset=None)
def crash_always(example: dict) -> str:
    if example.get("poison"):
        os._exit(1)
    return answer(example["question"], example["id"])


@hm.runtime(name="engine-mixed", dataset=rows(200), max_error_rate=1.0)
def mixed_outputs(example: dict) -> str:
    return shaky(example["id"])


@hm.runtime(name="engine-opaque", dataset=rows(50), max_error_rate=1.0)
def opaque_outputs(example: dict) -> Any:
    return opaque(example["question"])


@hm.runtime(name="engine-odd", max_error_rate=1.0)
def odd_outputs(example: dict) -> Any:
    """Outputs JSON cannot hold as they are: each is stored as JSON text or as its repr."""
    kind = example["id"] % 4
    if kind == 0:
        return {"scores": [1, 2.5, None], "label": "é"}
    if kind == 1:
        return datetime.date(2026, 11, 26)
    if kind == 2:
        loop: list[Any] = [1]
        loop.append(loop)
        return loop
    return {(1, 2): "tuple key"}


#: examples in flight and the most seen at once, per run, in this worker process: a warm
#: driver actor serves many runs, so a process-wide peak would show an earlier run's
_in_flight: dict[int | None, int] = {}
_peak: dict[int | None, int] = {}


@hm.component(evals=[echo_id])
async def slow_answer(question: str, id: int) -> str:
    await asyncio.sleep(random.uniform(0.001, 0.02))
    return f"{question}:{id}"


@contextmanager
def _counted(run_id: int | None) -> Iterator[None]:
    """Count an example in flight for its run while the block runs."""
    _in_flight[run_id] = _in_flight.get(run_id, 0) + 1
    _peak[run_id] = max(_peak.get(run_id, 0), _in_flight[run_id])
    try:
        yield
    finally:
        _in_flight[run_id] -= 1


def peak(output: str) -> float:
    """The most examples of this run in flight at once in the worker that ran this one."""
    return float(output)


@hm.runtime(name="engine-async", dataset=rows(400), concurrency=16, evals=[peak])
async def concurrent(example: dict, context: hm.RunContext) -> str:
    with _counted(context.run_id):
        await slow_answer(example["question"], example["id"])
    return str(_peak[context.run_id])


@hm.runtime(name="engine-async-pairs", dataset=rows(100), concurrency=2, evals=[peak])
async def concurrent_pairs(example: dict, context: hm.RunContext) -> str:
    """Two examples at once over the whole cluster: one per worker of two."""
    with _counted(context.run_id):
        await slow_answer(example["question"], example["id"])
    return str(_peak[context.run_id])


@hm.runtime(name="engine-slow", dataset=rows(3000))
def slow(example: dict) -> str:
    time.sleep(0.004)
    return answer(example["question"], example["id"])


def needs_gold(output: str, gold: str) -> float:
    return 1.0


@hm.component(evals=[needs_gold])
def unbound(question: str) -> str:
    return question


@hm.runtime(name="engine-unbound", dataset=rows(20))
def unbindable(example: dict) -> str:
    return unbound(example["question"])


@hm.runtime(name="engine-strict", dataset=rows(200), max_error_rate=0.05)
def strict_mixed(example: dict) -> str:
    return shaky(example["id"])


@hm.runtime(name="engine-endless", dataset=None)
def endless(example: dict) -> str:
    return answer(example["question"], example["id"])


@hm.component(evals=[echo_id, exact])
def flaky_answer(question: str, id: int, marker: str) -> str:
    """A model API that is down for a third of the examples until ``marker`` exists."""
    if id % 3 == 0 and not Path(marker).exists():
        raise ConnectionError("the model API is unavailable")
    return f"{question}:{id}"


def flaky_rows(context: hm.RunContext) -> list[dict[str, Any]]:
    n = int(context.params.get("n", 300))
    return rows(n, marker=str(context.params["marker"]))


@hm.runtime(name="engine-flaky", dataset=flaky_rows, max_error_rate=0.1)
def flaky(example: dict) -> str:
    return flaky_answer(example["question"], example["id"], example["marker"])


@hm.runtime(name="engine-twins", dataset=None)
def twins(example: dict) -> str:
    """Scored on examples without ids, many of them identical."""
    return answer(example["question"], int(example["question"][1:]))


def picky(output: str, id: int) -> float:
    """Raises an ordinary exception on every third example."""
    if id % 3 == 0:
        raise ValueError(f"cannot score example {id}\nand a second line")
    return 1.0


@hm.component(evals=[echo_id, picky, exact])
def careful(question: str, id: int) -> str:
    return f"{question}:{id}"


@hm.runtime(name="engine-raising-eval", dataset=rows(30), max_error_rate=1.0)
def raising_eval(example: dict) -> str:
    return careful(example["question"], example["id"])


def length(output: str) -> float:
    return float(len(output))


@hm.component(evals=[length])
def echo_text(text: str) -> str:
    return text


@hm.runtime(name="engine-sized", dataset=None)
def sized(example: dict) -> str:
    """Calls whose inputs and outputs are as large as the example's ``text``."""
    return echo_text(example["text"])


@hm.runtime(name="engine-nightly", dataset=rows(3000), schedule="0 2 * * *", timezone="UTC")
def nightly_slow(example: dict) -> str:
    """A scheduled evaluation slow enough to be stopped in the middle (like ``slow``)."""
    time.sleep(0.004)
    return answer(example["question"], example["id"])


def exits(output: str, id: int) -> float:
    """Raises SystemExit on every fifth example and KeyboardInterrupt on every seventh."""
    if id % 5 == 0:
        raise SystemExit(f"eval exit on {id}")
    if id % 7 == 0:
        raise KeyboardInterrupt
    return 1.0


@hm.component(evals=[exits])
def quitter(question: str, id: int) -> str:
    if id % 11 == 0:
        sys.exit(3)  # user code that exits: an error row, not a dead worker
    return question


@hm.runtime(name="engine-exits", dataset=rows(100), max_error_rate=1.0)
def exiting(example: dict) -> str:
    return quitter(example["question"], example["id"])


@hm.runtime(name="engine-mutating", dataset=rows(6), max_error_rate=1.0)
def mutating(example: dict) -> str:
    """Puts a value that cannot be pickled into some examples."""
    if example["id"] % 3 == 0:
        example["client"] = threading.Lock()
    return answer(example["question"], example["id"])


def size(output: str) -> float:
    return float(len(output))


def double_size(output: str) -> float:
    return 2.0 * len(output)


@hm.component(name="echo", evals=[hm.bind(size, name="size")])
def echo_v1(question: str) -> str:
    return question


@hm.component(name="echo", evals=[hm.bind(double_size, name="size")])
def echo_v2(question: str) -> str:
    return question


@hm.runtime(name="engine-warm-scorer")
def echoed(example: dict) -> str:
    return echo_v1(example["question"])


@hm.runtime(name="engine-warm-scorer")
def echoed_fixed(example: dict) -> str:
    """The same evaluation with a fixed eval (another attempt, same name)."""
    return echo_v2(example["question"])
