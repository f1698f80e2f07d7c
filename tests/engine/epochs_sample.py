"""Systems under test with epochs and example fields (importable by Ray workers as
tests.engine.epochs_sample)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import hypermetric as hm


def seeded(example_id: str, epoch: int) -> float:
    """The draw a component seeded on (example id, epoch) makes: what the tests expect."""
    return random.Random(f"{example_id}/{epoch}").random()


def draw(output: float) -> float:
    return output


@hm.component(evals=[draw])
def sampler(example_id: str, epoch: int) -> float:
    """A model that samples: seeded on the example and the epoch, so each epoch differs
    and a rerun draws the same."""
    return seeded(example_id, epoch)


def rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"id": i, "question": f"q{i}", "topic": "math" if i % 2 else "history", **extra}
        for i in range(n)
    ]


@hm.runtime(name="engine-epochs", dataset=rows(60), epochs=3)
def sampled(example: dict, context: hm.RunContext) -> float:
    return sampler(str(example["id"]), context.epoch)


@hm.runtime(name="engine-epochs-async", dataset=rows(20), epochs=3, concurrency=8)
async def sampled_async(example: dict, context: hm.RunContext) -> float:
    await asyncio.sleep(0.001)
    return sampler(str(example["id"]), context.epoch)


@hm.runtime(name="engine-epochs-slow", dataset=rows(900), epochs=3)
def sampled_slowly(example: dict, context: hm.RunContext) -> float:
    """Slow enough for its driver to be killed in the middle of the run."""
    time.sleep(0.004)
    return sampler(str(example["id"]), context.epoch)


@hm.component(evals=[draw])
def flaky_sampler(example_id: str, epoch: int, marker: str) -> float:
    """A model API down for every third example in its second epoch until ``marker`` exists."""
    if epoch == 1 and int(example_id) % 3 == 0 and not Path(marker).exists():
        raise ConnectionError("the model API is unavailable")
    return seeded(example_id, epoch)


def flaky_rows(context: hm.RunContext) -> list[dict[str, Any]]:
    return rows(int(context.params.get("n", 60)), marker=str(context.params["marker"]))


@hm.runtime(name="engine-epochs-flaky", dataset=flaky_rows, epochs=3, max_error_rate=0.1)
def flaky_sampled(example: dict, context: hm.RunContext) -> float:
    return flaky_sampler(str(example["id"]), context.epoch, example["marker"])


@hm.runtime(
    name="engine-fields",
    dataset=None,
    omit_fields=["secret"],
)
def with_fields(example: dict) -> float:
    example["question"] = "changed by the runtime"  # not what the run stores
    return sampler(str(example["id"]), 0)


@hm.runtime(name="engine-epochs-salted", dataset=rows(40), epochs=3)
def salted(example: dict, context: hm.RunContext) -> float:
    """Draws seeded on the run's ``salt`` param too: two runs are two models to compare."""
    return sampler(f"{context.params['salt']}/{example['id']}", context.epoch)
