"""The systems under test of the engine benchmark (importable by Ray workers)."""

from __future__ import annotations

import asyncio

import hypermetric as hm

#: iterations of the CPU-bound eval's loop for about 40 µs a call (calibrated at start)
BURN_LOOPS = 400


def burn(output: str, answer: str, loops: int = BURN_LOOPS) -> float:
    """``loops`` iterations of pure-Python work (0: a trivial eval), then a score."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return float(output == answer) + acc * 0.0


def exact(output: str, answer: str) -> float:
    return float(output == answer)


@hm.component(evals=[burn])
def heavy(question: str, loops: int) -> str:
    return question


@hm.component(evals=[exact])
def light(question: str) -> str:
    return question


@hm.component(evals=[exact])
async def remote_model(question: str) -> str:
    await asyncio.sleep(0.02)
    return question


@hm.runtime(name="bench-cpu")
def cpu_bound(example: dict, context: hm.RunContext) -> str:
    # the calibrated loop count travels as a run parameter: workers import this module anew
    return heavy(example["question"], context.params["loops"])


@hm.runtime(name="bench-trivial")
def trivial(example: dict) -> str:
    return light(example["question"])


@hm.runtime(name="bench-io", concurrency=100)
async def io_bound(example: dict) -> str:
    return await remote_model(example["question"])
