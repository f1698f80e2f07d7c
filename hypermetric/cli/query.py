"""``hypermetric sql``, ``compare`` and ``history``: reading the history."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click
from rich.table import Table

from hypermetric.cli.render import console, fmt_time
from hypermetric.errors import QueryError

if TYPE_CHECKING:
    from hypermetric.query.compare import Comparison, ExampleChange, MetricDelta
    from hypermetric.query.history import HistoryPoint

__all__ = ["compare_cmd", "history_cmd", "register", "sql_cmd"]


@click.command("sql")
@click.argument("query")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="table shows the first rows; csv, json and parquet write them all.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE.")
@click.option("--as-of", type=int, metavar="V", help="Read the datasets as of version V.")
@click.option("--max-rows", default=100, show_default=True, type=click.IntRange(min=1))
def sql_cmd(query: str, fmt: str, output: str | None, as_of: int | None, max_rows: int) -> None:
    """Run the SQL QUERY ("-" reads it from stdin) over all history.

    Views: scores, calls (every committed row), runs, evaluations, dataset_versions.
    """
    from hypermetric.query.connection import sql
    from hypermetric.query.output import relation_table, write_rows
    from hypermetric.query.render import table_text

    if query == "-":
        query = sys.stdin.read()
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    relation = sql(query, as_of=as_of)
    if fmt == "table":
        table, more = relation_table(relation, max_rows)
        note = f"(first {max_rows} rows; --format csv|json|parquet writes them all)\n"
        if output is None:
            console().print(table)
            if more:
                click.echo(note, nl=False)
        else:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(table_text(table, width=1000) + (note if more else ""))
        return
    if output is None:
        sys.stdout.flush()
        write_rows(relation, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with open(output, "wb") as sink:
        write_rows(relation, fmt, sink)


ARROWS = {True: "↑", False: "↓", None: "?"}


def _verdict(m: MetricDelta, threshold: float | None, alpha: float) -> str:
    if m.fails(threshold or 0.0, alpha):
        return "[red]regressed[/red]"
    if m.improved_beyond() and m.significant(alpha):
        return "[green]improved[/green]"
    return ""


def _compare_columns(comparison: Comparison) -> list[str]:
    level = f"{1 - comparison.alpha:.0%}"
    adjusted = [] if comparison.adjust == "none" else [f"p {comparison.adjust}"]
    binary = ["McNemar p"] if any(m.binary for m in comparison.metrics) else []
    epochs = any(m.within_var_a is not None for m in comparison.metrics)
    within = ["within var A/B"] if epochs else []
    return [
        *("component", "metric", "n", "mean A", "mean B", "delta B-A", f"{level} CI"),
        *("p", *adjusted, "MDE", *binary, "b/w/s", "only A/B, err"),
        *within,
        "",
    ]


def _compare_row(m: MetricDelta, comparison: Comparison, threshold: float | None) -> list[str]:
    from hypermetric.query.render import fmt_interval, fmt_num, fmt_p

    binary = any(x.binary for x in comparison.metrics)
    epochs = any(x.within_var_a is not None for x in comparison.metrics)
    return [
        m.component or "",
        f"{m.metric} {ARROWS[m.higher_is_better]}",
        str(m.n),
        fmt_num(m.mean_a),
        fmt_num(m.mean_b),
        fmt_num(m.delta, signed=True),
        fmt_interval(m.ci_low, m.ci_high),
        fmt_p(m.p_value),
        *([] if comparison.adjust == "none" else [fmt_p(m.p_adjusted)]),
        fmt_num(m.mde),
        *([fmt_p(m.mcnemar_p) if m.binary else ""] if binary else []),
        "/".join("?" if v is None else str(v) for v in (m.improved, m.regressed, m.unchanged)),
        f"{m.only_a}/{m.only_b}, {m.errored}",
        *([f"{fmt_num(m.within_var_a)}/{fmt_num(m.within_var_b)}"] if epochs else []),
        _verdict(m, threshold, comparison.alpha),
    ]


def _compare_caption(comparison: Comparison) -> str:
    c = comparison
    if c.cluster_by:
        clusters = sorted({m.clusters for m in c.metrics if m.clusters is not None})
        counts = "/".join(str(n) for n in clusters) or "0"
        ci = f"CI and p: clustered by {c.cluster_by} ({counts} clusters; CR1, t at C-1 df)"
    else:
        ci = f"CI: paired bootstrap ({c.resamples} resamples, seed {c.seed}); p: paired t-test"
    adjusted = {
        "holm": "p holm: Holm-adjusted across these metrics",
        "bh": "p bh: Benjamini-Hochberg-adjusted across these metrics",
        "none": "p not adjusted for the metrics tested together",
    }[c.adjust]
    caption = (
        f"paired by example (epochs reduced by {c.reduce}); {ci}; {adjusted}; "
        f"MDE: smallest true delta detected with {c.power:.0%} power at alpha {c.alpha:g}; "
        "a verdict needs the CI beyond 0 and the adjusted p below alpha; "
        "b/w/s: examples better/worse/same; ↑/↓: higher/lower is better"
    )
    if any(m.binary for m in c.metrics):
        caption += "; McNemar: exact test of the discordant pairs of a 0/1 metric"
    if c.unknown_direction():
        caption += "; ?: neither run records the metric's direction"
    return caption


def _compare_table(comparison: Comparison, threshold: float | None) -> Table:
    a, b = comparison.run_a, comparison.run_b
    table = Table(
        title=f"A: run {a.id} {a.evaluation}@{a.version_label or '-'}   "
        f"B: run {b.id} {b.evaluation}@{b.version_label or '-'}"
    )
    columns = _compare_columns(comparison)
    widest = {
        "component": max((len(m.component or "") for m in comparison.metrics), default=0),
        "metric": max((len(m.metric) + 2 for m in comparison.metrics), default=0),
    }
    for name in columns:
        left = name in columns[:2]
        table.add_column(
            name, justify="left" if left else "right", no_wrap=True, min_width=widest.get(name)
        )
    for m in comparison.metrics:
        table.add_row(*_compare_row(m, comparison, threshold))
    table.caption = _compare_caption(comparison)
    return table


def _examples_table(title: str, changes: Sequence[ExampleChange]) -> Table:
    from hypermetric.query.render import fmt_num

    table = Table(title=title)
    for name in ("component", "metric", "example", "call", "A", "B", "delta"):
        table.add_column(name, justify="right" if name in ("A", "B", "delta") else "left")
    for c in changes:
        table.add_row(
            c.component or "",
            c.metric,
            c.example_id,
            str(c.call_index),
            fmt_num(c.value_a),
            fmt_num(c.value_b),
            fmt_num(c.delta, signed=True),
        )
    if not changes:
        table.caption = "none"
    return table


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--metric", "-m", help="Only this metric (and its METRIC.key parts).")
@click.option(
    "--show",
    type=click.Choice(["regressions", "improvements"]),
    help="Also list the examples that got worse (worst first) or better.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--fail-on-regression",
    "fail_threshold",
    type=float,
    is_flag=False,
    flag_value=0.0,
    default=None,
    metavar="[THRESHOLD]",
    help="Exit 1 when a metric's delta CI lies wholly below -THRESHOLD (default 0), "
    "in the metric's direction, and its adjusted p is below --alpha. Put it after the runs.",
)
@click.option(
    "--cluster-by",
    metavar="FIELD",
    help="Cluster the errors by this example field (a document or topic id): CR1 "
    "standard errors and t at C-1 degrees of freedom.",
)
@click.option(
    "--reduce",
    "reducer",
    default="mean",
    show_default=True,
    metavar="mean|majority|pass_at_k:K",
    help="How each example's epochs become one value before pairing.",
)
@click.option(
    "--adjust",
    type=click.Choice(["holm", "bh", "none"]),
    default="holm",
    show_default=True,
    help="Adjust the p-values across the metrics shown (the gate uses the adjusted ones).",
)
@click.option(
    "--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 0.5, min_open=True)
)
@click.option("--resamples", default=2000, show_default=True, type=click.IntRange(min=100))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def compare_cmd(
    ctx: click.Context,
    run_a: str,
    run_b: str,
    metric: str | None,
    show: str | None,
    limit: int,
    fail_threshold: float | None,
    cluster_by: str | None,
    reducer: str,
    adjust: str,
    alpha: float,
    resamples: int,
    seed: int,
    fmt: str,
) -> None:
    """Compare RUN_B against RUN_A, paired by example.

    Name a run by its id or as EVALUATION@VERSION (its newest successful run). Each row
    shows the delta with its CI, the raw and adjusted p-values and the MDE (the smallest
    true delta detected with 80% power); a 0/1 metric adds McNemar's exact test.
    """
    from hypermetric.query.compare import compare

    result = compare(
        run_a,
        run_b,
        metric=metric,
        resamples=resamples,
        seed=seed,
        examples=limit if show else 0,
        cluster_by=cluster_by,
        reduce=reducer,
        adjust=adjust,
        alpha=alpha,
    )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), default=str, indent=2))
    else:
        out = console()
        out.print(_compare_table(result, fail_threshold))
        if show == "regressions":
            out.print(_examples_table("examples that got worse, worst first", result.regressions))
        elif show == "improvements":
            out.print(_examples_table("examples that got better, best first", result.improvements))
    if fail_threshold is not None:
        _refuse_unknown_directions(result)
        failing = result.failing(fail_threshold)
        for m in failing:
            click.echo(
                f"regression: {m.component}/{m.metric} delta {m.delta:+.4f}, "
                f"{1 - result.alpha:.0%} CI [{m.ci_low:.4f}, {m.ci_high:.4f}] beyond "
                f"threshold {fail_threshold:g}, p {m.p_adjusted:.3g} ({result.adjust})",
                err=True,
            )
        if failing:
            ctx.exit(1)


def _refuse_unknown_directions(result: Comparison) -> None:
    """A gate never guesses which way is worse."""
    unknown = result.unknown_direction()
    if unknown:
        names = ", ".join(f"{m.component}/{m.metric}" for m in unknown)
        raise QueryError(
            f"cannot gate on {names}: neither run {result.run_a.id} nor run "
            f"{result.run_b.id} records its direction; run the evaluation again (runs record "
            "the direction of every eval that ran), or leave it out with --metric"
        )


@click.command("history")
@click.argument("name")
@click.option("--metric", "-m", help="Only this metric (and its METRIC.key parts).")
@click.option(
    "--window",
    default=7,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many previous runs form the expected interval.",
)
@click.option("--last", type=click.IntRange(min=1), help="Show only the newest N runs.")
def history_cmd(name: str, metric: str | None, window: int, last: int | None) -> None:
    """A metric of evaluation NAME across its successful runs, oldest first.

    A run is marked ▲/▼ when its mean left the interval the previous WINDOW runs
    predict for it (their pooled mean, widened by this run's noise, theirs and the usual
    night-to-night wobble; see hypermetric.query.history).
    """
    from hypermetric.query.history import history
    from hypermetric.query.render import fmt_interval, fmt_num

    points = history(name, metric=metric, window=window)
    out = console()
    if not points:
        out.print(f"no scores in successful runs of {name}")
        return
    series: dict[tuple[str | None, str], list[HistoryPoint]] = {}
    for point in points:
        series.setdefault((point.component, point.metric), []).append(point)
    for (component, metric_name), rows in series.items():
        up = rows[-1].higher_is_better
        arrow = {True: "↑ higher is better", False: "↓ lower is better", None: "direction unknown"}
        title = f"{name} · {component or '-'} · {metric_name} ({arrow[up]})"
        table = Table(title=title)
        for col in ("logical date (UTC)", "run", "version", "n", "mean", "95% CI", "expected", ""):
            table.add_column(col, justify="right" if col in ("n", "mean") else "left")
        for p in rows[-last:] if last else rows:
            table.add_row(
                fmt_time(p.logical_date),
                str(p.run_id),
                p.version or "",
                str(p.n),
                fmt_num(p.mean),
                fmt_interval(p.ci_low, p.ci_high),
                fmt_interval(p.expected_low, p.expected_high),
                _shift_mark(p.shift, up),
            )
        out.print(table)


def _shift_mark(shift: str, up: bool | None) -> str:
    """▲/▼ for a move, green when it is an improvement, red when a regression."""
    if not shift:
        return ""
    text = "▲ up" if shift == "up" else "▼ down"
    if up is None:
        return text
    good = (shift == "up") == up
    return f"[green]{text}[/green]" if good else f"[red]{text}[/red]"


def register(root: click.Group) -> None:
    """Add ``sql``, ``compare`` and ``history`` to the root command."""
    for command in (sql_cmd, compare_cmd, history_cmd):
        root.add_command(command)
