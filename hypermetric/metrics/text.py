"""Text evals: compare a generated string with one or more acceptable answers.

Every eval here takes ``output`` (the component's return value, a string) and, except
:func:`regex_match`, ``answer``: one acceptable answer, or a list of them, in which case
the best score over the list counts, as the SQuAD evaluation does. An empty list of
answers gives no score (None). All are higher-is-better, with scores in [0, 1].

=========================  ===================================================================
``exact_match``            1.0 if the output equals an answer, surrounding whitespace ignored
``normalized_exact_match`` SQuAD v1.1 "EM": equality after :func:`normalize_answer`
``token_f1``               SQuAD v1.1 "F1": token-overlap F1 after :func:`normalize_answer`
``contains``               1.0 if a normalised answer occurs in the normalised output
``regex_match(pattern)``   1.0 if the pattern is found in the output (a factory)
``rouge_l``                ROUGE-L F-measure (longest common subsequence), as ``rouge_score``
=========================  ===================================================================
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from hypermetric.api.evals import Eval, eval
from hypermetric.errors import DefinitionError
from hypermetric.metrics._text_utils import (
    as_answers,
    as_text,
    lcs_length,
    normalize_answer,
    rouge_tokens,
)

__all__ = [
    "contains",
    "exact_match",
    "normalize_answer",
    "normalized_exact_match",
    "regex_match",
    "rouge_l",
    "token_f1",
]

_Answer = str | Iterable[str]


@eval(higher_is_better=True)
def exact_match(output: str, answer: _Answer) -> float | None:
    """1.0 if ``output`` equals an acceptable answer, else 0.0.

    Case, punctuation and inner whitespace count; only leading and trailing whitespace is
    ignored (``str.strip``). For SQuAD's forgiving comparison use
    :func:`normalized_exact_match`. None when ``answer`` is an empty list.
    """
    golds = as_answers(answer, "exact_match")
    if not golds:
        return None
    text = as_text(output, "exact_match").strip()
    return float(any(text == gold.strip() for gold in golds))


@eval(higher_is_better=True)
def normalized_exact_match(output: str, answer: _Answer) -> float | None:
    """SQuAD v1.1 exact match: 1.0 if the normalised output equals a normalised answer.

    Both sides go through :func:`normalize_answer` (lower-case, drop punctuation and the
    articles a/an/the, collapse whitespace), so ``"The Eiffel Tower."`` matches
    ``"eiffel tower"``. The maximum over the acceptable answers is the score, as in
    SQuAD's ``metric_max_over_ground_truths``. None when ``answer`` is an empty list.
    """
    golds = as_answers(answer, "normalized_exact_match")
    if not golds:
        return None
    text = normalize_answer(as_text(output, "normalized_exact_match"))
    return float(any(text == normalize_answer(gold) for gold in golds))


def _f1(prediction: list[str], gold: list[str]) -> float:
    common = Counter(prediction) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction)
    recall = same / len(gold)
    return (2 * precision * recall) / (precision + recall)


@eval(higher_is_better=True)
def token_f1(output: str, answer: _Answer) -> float | None:
    """SQuAD v1.1 F1: harmonic mean of token precision and recall after normalisation.

    Tokens are the whitespace-separated words of :func:`normalize_answer`; overlap counts
    repeated tokens at most as often as both sides have them. As in SQuAD v1.1, an output
    or answer that normalises to nothing scores 0.0 (even against an empty answer). The
    maximum over the acceptable answers is the score; None when ``answer`` is an empty
    list.
    """
    golds = as_answers(answer, "token_f1")
    if not golds:
        return None
    tokens = normalize_answer(as_text(output, "token_f1")).split()
    return max(_f1(tokens, normalize_answer(gold).split()) for gold in golds)


@eval(higher_is_better=True)
def contains(output: str, answer: _Answer) -> float | None:
    """1.0 if an acceptable answer occurs in ``output`` as whole words, else 0.0.

    Both sides are normalised as SQuAD does (:func:`normalize_answer`), and the answer
    must appear as a run of whole words: ``"paris"`` is in ``"It is Paris."`` but not in
    ``"Parisian"``. An answer that normalises to nothing is contained in every output,
    like ``"" in s``. None when ``answer`` is an empty list.
    """
    golds = as_answers(answer, "contains")
    if not golds:
        return None
    # Padding with spaces turns "whole words" into a plain substring test.
    text = f" {normalize_answer(as_text(output, 'contains'))} "
    for gold in golds:
        normalized = normalize_answer(gold)
        if not normalized or f" {normalized} " in text:
            return 1.0
    return 0.0


def regex_match(pattern: str | re.Pattern[str], flags: int = 0, *, name: str | None = None) -> Eval:
    """An eval of ``(output)``: 1.0 if ``pattern`` is found anywhere in the output.

    The pattern belongs to the eval rather than to each example, so it is compiled once
    here and recorded in the eval's ``params`` (``{"pattern": ..., "flags": ...}``) for
    reproducibility. Matching uses ``re.search``: anchor with ``^...$`` (or ``\\A...\\Z``)
    to require the whole output to match. ``name`` defaults to ``"regex_match"``; give
    each one a name when a component has several. An invalid pattern or flags is a
    :class:`~hypermetric.errors.DefinitionError`. For a pattern that differs per example,
    write a two-argument eval of your own.
    """
    if isinstance(pattern, re.Pattern):
        if flags:
            raise DefinitionError(
                "regex_match(): pass flags either in the compiled pattern or as flags=, not both"
            )
        compiled = pattern
    elif isinstance(pattern, str):
        try:
            compiled = re.compile(pattern, flags)
        except (re.error, TypeError, ValueError) as exc:
            raise DefinitionError(
                f"regex_match(): cannot compile {pattern!r} with flags={flags!r}: {exc}"
            ) from exc
    else:
        raise DefinitionError(
            f"regex_match(): pattern must be a string or re.Pattern, got {type(pattern).__name__}"
        )
    label = name or "regex_match"
    search = compiled.search

    def regex_match_eval(output: str) -> float:
        return 1.0 if search(as_text(output, label)) is not None else 0.0

    return eval(
        regex_match_eval,
        name=label,
        params={"pattern": compiled.pattern, "flags": int(compiled.flags & ~re.UNICODE)},
        description=f"1.0 if re.search({compiled.pattern!r}) finds a match in the output.",
    )


def _rouge_l(prediction: list[str], target: list[str]) -> float:
    if not prediction or not target:
        return 0.0
    lcs = lcs_length(prediction, target)
    precision = lcs / len(prediction)
    recall = lcs / len(target)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@eval(higher_is_better=True)
def rouge_l(output: str, answer: _Answer) -> float | None:
    """ROUGE-L F-measure: F1 of the longest common subsequence of tokens (Lin, 2004).

    With P = LCS / output tokens and R = LCS / answer tokens, the score is 2PR / (P + R),
    0.0 when either side has no tokens. Tokens are lower-cased runs of letters and digits
    (see ``rouge_tokens`` in ``_text_utils``), without stemming, so on
    ASCII text the score equals ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])``'s
    ``fmeasure``; letters outside ASCII are kept rather than dropped. With several
    answers the best F-measure counts (``RougeScorer.score_multi``). None when ``answer``
    is an empty list.
    """
    golds = as_answers(answer, "rouge_l")
    if not golds:
        return None
    tokens = rouge_tokens(as_text(output, "rouge_l"))
    return max(_rouge_l(tokens, rouge_tokens(gold)) for gold in golds)
