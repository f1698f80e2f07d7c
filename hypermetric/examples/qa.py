"""The demo: question answering over fictional towns, evaluated at component level.

Two components: ``retrieve`` (BM25, scored with retrieval evals and a cost eval whose lower
is better) and ``answer`` (a reader that votes over the sentences it is given, scored with
text evals). Two versions differ by parameters: ``v1`` reads the top 2 documents, ``v2``
the top 5 with a stemming tokenizer: it finds more of the relevant documents, and pays for
it in context size and in answers misled by travel notes.

    hypermetric run hypermetric.examples.qa:qa --version v1 --param top_k=2
    hypermetric run hypermetric.examples.qa:qa --version v2 --param top_k=5 --param stemming=true
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

import hypermetric as hm
from hypermetric.examples.bm25 import BM25
from hypermetric.examples.corpus import ATTRIBUTES, corpus, questions

__all__ = [
    "VERSIONS",
    "answer",
    "context_tokens",
    "nightly_questions",
    "qa",
    "qa_nightly",
    "retrieve",
]

#: the two versions the quickstart compares: a label and its run parameters
VERSIONS = {
    "v1": {"top_k": 2, "stemming": False},
    "v2": {"top_k": 5, "stemming": True},
}


@cache
def _index(stemming: bool) -> BM25:
    _, documents = corpus()
    return BM25([d.id for d in documents], [d.text for d in documents], stemming=stemming)


@cache
def _texts() -> dict[str, str]:
    return {d.id: d.text for d in corpus()[1]}


@cache
def _towns() -> frozenset[str]:
    return frozenset(t.name for t in corpus()[0])


@cache
def _patterns() -> dict[str, list[re.Pattern[str]]]:
    out: dict[str, list[re.Pattern[str]]] = {}
    for attribute, (_, fact, note) in ATTRIBUTES.items():
        out[attribute] = [
            re.compile(
                re.escape(t.rstrip("."))
                .replace(r"\{town\}", "(?P<town>[A-Z][a-z]+)")
                .replace(r"\{value\}", "(?P<value>[A-Za-z0-9 ]+?)")
                + "$"
            )
            for t in (fact, note)
        ]
    return out


@hm.eval(higher_is_better=False)
def context_tokens(output: list[str]) -> float:
    """Words of context the reader must read: a cost, lower is better."""
    texts = _texts()
    return float(sum(len(texts[d].split()) for d in output))


@hm.component(
    evals=[
        hm.metrics.hit_rate_at_k(1),
        hm.metrics.recall_at_k(5),
        hm.metrics.mrr,
        hm.metrics.ndcg_at_k(5),
        context_tokens,
    ]
)
def retrieve(question: str, top_k: int = 2, stemming: bool = False) -> list[str]:
    """The ``top_k`` documents for the question, by BM25."""
    return _index(stemming).search(question, top_k)


def _attribute(question: str) -> str | None:
    for attribute, (templates, _, _) in ATTRIBUTES.items():
        for template in templates:
            prefix, _, suffix = template.partition("{town}")
            if question.startswith(prefix) and question.endswith(suffix):
                return attribute
    return None


@hm.component(evals=[hm.metrics.exact_match, hm.metrics.token_f1])
def answer(question: str, docs: list[str]) -> str:
    """The value most sentences about the question's town give for the asked attribute."""
    town = next((w.strip("?,.") for w in question.split() if w.strip("?,.") in _towns()), None)
    attribute = _attribute(question)
    if town is None or attribute is None:
        return ""
    votes: dict[str, float] = {}
    texts = _texts()
    for rank, doc in enumerate(docs):
        for sentence in re.split(r"(?<=\.)\s+", texts[doc]):
            for pattern in _patterns()[attribute]:
                match = pattern.match(sentence.rstrip("."))
                if match and match.group("town") == town:
                    value = match.group("value")
                    votes[value] = votes.get(value, 0.0) + 1 + 0.1 / (rank + 1)
    return max(votes, key=votes.__getitem__) if votes else ""


@hm.runtime(
    name="demo-qa",
    dataset=questions(300),
    version="v1",
    params=VERSIONS["v1"],
    description="Town facts QA: BM25 retrieval and a voting reader.",
)
def qa(example: dict[str, Any], context: hm.RunContext) -> str:
    """Retrieve documents for the question, then read an answer from them."""
    docs = retrieve(
        example["question"],
        context.params.get("top_k", 2),
        bool(context.params.get("stemming", False)),
    )
    return answer(example["question"], docs)


def nightly_questions(context: hm.RunContext) -> list[dict[str, Any]]:
    """Tonight's evaluation set: 120 questions drawn for the run's logical date."""
    day: datetime = context.logical_date
    return questions(120, seed=day.toordinal())


@hm.runtime(
    name="demo-qa-nightly",
    dataset=nightly_questions,
    version="v2",
    params=VERSIONS["v2"],
    schedule="0 2 * * *",
    timezone="UTC",
    catchup=False,
    retries=1,
    retry_delay=30,
    description="The demo QA system, evaluated every night at 02:00 UTC.",
)
def qa_nightly(example: dict[str, Any], context: hm.RunContext) -> str:
    """The same system, scheduled: the set changes every night."""
    return qa.fn(example, context)
