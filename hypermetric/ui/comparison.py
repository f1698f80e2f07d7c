"""Two runs side by side: what ``hypermetric compare`` shows, and the regressed examples
with both outputs and their differences highlighted.

The statistics are :func:`hypermetric.query.compare.compare`'s (paired bootstrap CI, paired
t-test p, improved/regressed/same in the metric's direction). The regressed examples come
worst first; for each, the outputs of the component call in both runs are read from the
``calls`` view and diffed word by word (:mod:`difflib`), so the page marks what changed.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace

import duckdb

from hypermetric.config import Settings
from hypermetric.query.compare import Comparison, ExampleChange, compare
from hypermetric.query.connection import open_connection, query_error
from hypermetric.query.sources import quote_literal
from hypermetric.ui.jsonable import masked_all
from hypermetric.ui.runs import shown_run

__all__ = ["CompareView", "Regression", "Segment", "compare_view", "diff_words", "shown_value"]

#: texts longer than this are cut before diffing (difflib is quadratic in the worst case)
MAX_DIFF_CHARS = 4000
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class Segment:
    """A piece of an output; ``changed`` when the other side does not have it."""

    text: str
    changed: bool


@dataclass(frozen=True)
class Regression:
    """A regressed example with the outputs of its call in A and in B, diffed."""

    change: ExampleChange
    output_a: tuple[Segment, ...]
    output_b: tuple[Segment, ...]
    inputs: str


@dataclass(frozen=True)
class CompareView:
    """What the compare page shows."""

    comparison: Comparison
    regressions: tuple[Regression, ...]


def shown_value(text: str | None) -> str:
    """A JSON cell as a person reads it: a string without its quotes, anything else as
    compact JSON (not masked: :func:`compare_view` masks a page's cells at once)."""
    if text is None:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _merge(pieces: list[Segment]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for piece in pieces:
        if out and out[-1].changed == piece.changed:
            out[-1] = Segment(out[-1].text + piece.text, piece.changed)
        else:
            out.append(piece)
    return tuple(out)


def diff_words(a: str, b: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """``a`` and ``b`` cut into segments, the words one side lacks marked changed."""
    a, b = a[:MAX_DIFF_CHARS], b[:MAX_DIFF_CHARS]
    ta, tb = _TOKENS.findall(a), _TOKENS.findall(b)
    left: list[Segment] = []
    right: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        same = op == "equal"
        if i2 > i1:
            left.append(Segment("".join(ta[i1:i2]), not same))
        if j2 > j1:
            right.append(Segment("".join(tb[j1:j2]), not same))
    return _merge(left), _merge(right)


def _outputs(
    settings: Settings, run_a: int, run_b: int, changes: tuple[ExampleChange, ...]
) -> dict[tuple[int, str | None, str, int], tuple[str | None, str | None]]:
    """(run, component, example, call) -> (output, inputs) of the changed examples' calls."""
    if not changes:
        return {}
    ids = ", ".join(sorted({quote_literal(c.example_id) for c in changes}))
    con = open_connection(settings, run_ids=[run_a, run_b], views=["calls"])
    try:
        rows = con.sql(
            # compare pairs an example over its epochs reduced to one value: the output
            # shown is its first epoch's
            "SELECT run_id, component, example_id, call_index, output, inputs FROM calls "
            f"WHERE run_id IN ({run_a}, {run_b}) AND example_id IN ({ids}) AND epoch = 0"
        ).fetchall()
    except duckdb.Error as exc:
        raise query_error(exc) from None
    finally:
        con.close()
    return {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in rows}


def compare_view(
    settings: Settings, a: str, b: str, *, metric: str | None = None, limit: int = 20
) -> CompareView:
    """Compare run ``b`` against ``a`` (ids or EVALUATION@VERSION) and diff the outputs of
    the ``limit`` worst regressions."""
    result = compare(a, b, metric=metric, examples=limit, settings=settings)
    result = replace(result, run_a=shown_run(result.run_a), run_b=shown_run(result.run_b))
    ra, rb = result.run_a.id, result.run_b.id
    outputs = _outputs(settings, ra, rb, result.regressions)
    texts: list[str | None] = []
    for change in result.regressions:
        key = (change.component, change.example_id, change.call_index)
        out_a, inputs = outputs.get((ra, *key), (None, None))
        out_b, inputs_b = outputs.get((rb, *key), (None, None))
        texts += [shown_value(out_a), shown_value(out_b), shown_value(inputs or inputs_b)]
    shown = masked_all(texts)
    regressions = []
    for i, change in enumerate(result.regressions):
        out_a, out_b, inputs = (t or "" for t in shown[3 * i : 3 * i + 3])
        left, right = diff_words(out_a, out_b)
        regressions.append(Regression(change, left, right, inputs))
    return CompareView(result, tuple(regressions))
