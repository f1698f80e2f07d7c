"""Okapi BM25 in pure Python: the demo's retriever."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["BM25", "tokenize"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    (
        "a",
        "an",
        "the",
        "of",
        "in",
        "is",
        "was",
        "what",
        "which",
        "who",
        "when",
        "where",
        "to",
        "its",
        "and",
        "from",
        "does",
        "how",
    )
)


def _stem(token: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if token.endswith(suffix) and len(token) > len(suffix) + 2:
            return token[: -len(suffix)]
    return token


def tokenize(text: str, *, stemming: bool = False) -> list[str]:
    """Lower-case word tokens; with ``stemming``, stop words dropped and suffixes stripped."""
    tokens = _WORD.findall(text.lower())
    if stemming:
        tokens = [_stem(t) for t in tokens if t not in _STOP]
    return tokens


class BM25:
    """An index over documents, queried for the top-k document ids."""

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        *,
        stemming: bool = False,
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        self.ids = list(ids)
        self.stemming, self.k1, self.b = stemming, k1, b
        self.docs = [Counter(tokenize(t, stemming=stemming)) for t in texts]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for doc in self.docs:
            df.update(doc.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def search(self, query: str, k: int) -> list[str]:
        """The ids of the ``k`` best documents for ``query``, best first."""
        terms = [t for t in tokenize(query, stemming=self.stemming) if t in self.idf]
        scores = []
        for i, doc in enumerate(self.docs):
            norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg)
            score = 0.0
            for t in terms:
                f = doc.get(t)
                if f:
                    score += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            if score:
                scores.append((score, -i))
        scores.sort(reverse=True)
        return [self.ids[-i] for _, i in scores[:k]]
