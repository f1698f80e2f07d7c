"""``hypermetric sql``, ``compare``, ``history`` and ``power``: reading the history."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click
from rich.table import Table

from hypermetric.cli.render import console, fmt_time
from hypermetric.cli.tables import compare_table, examples_table, power_notes, power_table
from hypermetric.errors import QueryError
from hypermetric.query.inference import ADJUSTMENTS

if TYPE_CHECKING:
    from hypermetric.query.compare import Comparison
    from hypermetric.query.history import HistoryPoint

__all__ = ["compare_cmd", "history_cmd", "power_cmd", "register", "sql_cmd"]


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

    Views: scores, calls, examples (every committed row), runs, evaluations,
    dataset_versions.
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


#: compare's and history's: each example's epochs to one value (query.reduce)
_reduce_option = click.option(
    "--reduce",
    "reducer",
    default="mean",
    show_default=True,
    metavar="mean|majority|pass_at_k:K",
    help="How each example's epochs become one value (before pairing, in compare).",
)


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
@_reduce_option
@click.option(
    "--adjust",
    type=click.Choice(ADJUSTMENTS),
    default="holm",
    show_default=True,
    help="Adjust the p-values across the metrics shown (the gate uses the adjusted ones).",
)
@click.option(
    "--alpha",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 0.5, min_open=True),
    help="Two-sided level of the tests; CIs are 1 - ALPHA.",
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
        out.print(compare_table(result, fail_threshold))
        if show == "regressions":
            out.print(examples_table("examples that got worse, worst first", result.regressions))
        elif show == "improvements":
            out.print(examples_table("examples that got better, best first", result.improvements))
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
@click.option(
    "--cluster-by",
    metavar="FIELD",
    help="Measure each run's noise with errors clustered by this example field (CR1).",
)
@_reduce_option
def history_cmd(
    name: str,
    metric: str | None,
    window: int,
    last: int | None,
    cluster_by: str | None,
    reducer: str,
) -> None:
    """A metric of evaluation NAME across its successful runs, oldest first.

    A run is marked ▲/▼ when its mean left the interval the previous WINDOW runs
    predict for it (their pooled mean, widened by this run's noise, theirs and the usual
    night-to-night wobble; see hypermetric.query.history).
    """
    from hypermetric.query.history import history
    from hypermetric.query.render import fmt_interval, fmt_num

    points = history(name, metric=metric, window=window, reduce=reducer, cluster_by=cluster_by)
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


@click.command("power")
@click.argument("name")
@click.option("--metric", "-m", required=True, help="The metric to detect a change in.")
@click.option("--delta", "-d", required=True, type=float, help="The change to detect (> 0).")
@click.option("--alpha", default=0.05, show_default=True, type=float, help="Two-sided level.")
@click.option(
    "--power", "power_", default=0.8, show_default=True, type=float, help="Chance to detect it."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs an example (default: 1, 2, 4, 8 and today's when the history shows the "
    "within-example variance, else today's).",
)
@click.option(
    "--cluster-by",
    metavar="FIELD",
    help="Examples that share this field's value are not independent (a document, a "
    "conversation): measure how much that widens the error, and plan in clusters.",
)
def power_cmd(
    name: str,
    metric: str,
    delta: float,
    alpha: float,
    power_: float,
    epochs: int | None,
    cluster_by: str | None,
) -> None:
    """How many examples (and epochs) evaluation NAME needs to detect a change of DELTA.

    From its successful runs: the per-example variance, the paired variance between its
    two newest versions (or twice one version's when there is one), and the within-example
    variance across epochs (see hypermetric.query.power).
    """
    from hypermetric.query.power import power

    estimates = power(
        name,
        metric=metric,
        delta=delta,
        alpha=alpha,
        power=power_,
        epochs=epochs,
        cluster_by=cluster_by,
    )
    out = console()
    for estimate in estimates:
        out.print(power_table(estimate))
        for line in power_notes(estimate):
            out.print(f"  {line}", soft_wrap=True)


def register(root: click.Group) -> None:
    """Add ``sql``, ``compare``, ``history`` and ``power`` to the root command."""
    for command in (sql_cmd, compare_cmd, history_cmd, power_cmd):
        root.add_command(command)
