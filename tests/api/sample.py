"""A small system under test used by the API tests."""

from __future__ import annotations

import hypermetric as hm


def exact(output: str, answer: str) -> float:
    return float(output == answer)


@hm.eval(higher_is_better=False)
def slowness(output: list[str]) -> float:
    return float(len(output))


@hm.component(evals=[slowness])
def retrieve(question: str, k: int = 2) -> list[str]:
    return [f"doc-{w}" for w in question.split()[:k]]


@hm.component(evals=[exact])
def generate(question: str, docs: list[str]) -> str:
    return question.split()[0].upper()


@hm.runtime(name="sample-qa", dataset=[{"question": "a b", "answer": "A"}])
def qa(example: dict) -> str:
    docs = retrieve(example["question"])
    return generate(example["question"], docs)
