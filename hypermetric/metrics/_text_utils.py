"""Normalisation and tokenisation shared by the text evals.

* :func:`normalize_answer` is the SQuAD v1.1 answer normalisation, step for step as the
  official ``evaluate-v1.1.py`` script does it: lower-case, drop ASCII punctuation
  (``string.punctuation``), drop the articles *a*, *an*, *the* as whole words, collapse
  whitespace.
* :func:`rouge_tokens` is the tokenisation of Google's ``rouge_score`` default tokenizer
  (lower-case, split on every character that is not a letter or digit, no stemming),
  extended to non-ASCII letters and digits, which ``rouge_score`` silently drops.
* :func:`as_answers` and :func:`as_text` check the ``answer`` and ``output`` arguments.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

__all__ = ["as_answers", "as_text", "lcs_length", "normalize_answer", "rouge_tokens"]

_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Letters and digits in any script; "_" is a word character for `re` but a separator for
# ROUGE, hence [^\W_] rather than \w.
_ROUGE_TOKEN = re.compile(r"[^\W_]+")


def normalize_answer(text: str) -> str:
    """``text`` normalised as SQuAD v1.1 does before comparing answers.

    >>> normalize_answer("  The Quick, brown FOX! ")
    'quick brown fox'
    """
    text = text.lower().translate(_DROP_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def rouge_tokens(text: str) -> list[str]:
    """``text`` as ROUGE tokens: lower-cased runs of letters and digits.

    On ASCII text this is exactly ``rouge_score``'s default tokenizer without stemming;
    other scripts keep their letters (``"café"`` is one token, where ``rouge_score``
    would give ``"caf"``). Scripts written without spaces are not segmented.
    """
    return _ROUGE_TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel (Allison & Dix 1986, Hyyrö 2004): one row of the dynamic programme is an
    integer with a bit per token of ``a``, so each token of ``b`` costs a few big-integer
    operations instead of ``len(a)`` Python steps.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    positions: dict[str, int] = {}
    for i, token in enumerate(a):
        positions[token] = positions.get(token, 0) | (1 << i)
    width = (1 << len(a)) - 1
    row = width
    for token in b:
        matches = row & positions.get(token, 0)
        row = ((row + matches) | (row - matches)) & width
    return len(a) - row.bit_count()


def as_text(value: object, eval_name: str) -> str:
    """``value`` if it is a string, else a TypeError naming the eval."""
    if not isinstance(value, str):
        raise TypeError(f"{eval_name}: output must be a string, got {type(value).__name__}")
    return value


def as_answers(answer: str | Iterable[str], eval_name: str) -> list[str]:
    """The acceptable answers: ``[answer]`` for a string, else the strings it holds."""
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, bytes | bytearray) or not isinstance(answer, Iterable):
        raise TypeError(
            f"{eval_name}: answer must be a string or a list of strings, "
            f"got {type(answer).__name__}"
        )
    golds = list(answer)
    for gold in golds:
        if not isinstance(gold, str):
            raise TypeError(
                f"{eval_name}: every acceptable answer must be a string, "
                f"got {type(gold).__name__}: {gold!r}"
            )
    return golds
