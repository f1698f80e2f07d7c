"""``hypermetric run``: run an evaluation now, with a progress bar and its summary;
``hypermetric rescore``: score a stored run's outputs again with today's evals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from hypermetric.catalog.records import RunRecord
from hypermetric.cli.render import console
from hypermetric.errors import RunFailedError

__all__ = [
    "drive_and_report",
    "parse_params",
    "print_outcome",
    "register",
    "rescore_cmd",
    "run_cmd",
]


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``k=v`` pairs as a dict; values are JSON when they parse (numbers, lists), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not k=v", param_hint="--param")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def print_outcome(run_id: int, started: float) -> None:
    """Print a run's summary table and a closing line."""
    from hypermetric.query.result import RunResult, render_summary

    result = RunResult(run_id)
    out = console()
    out.print(render_summary(result.summary(), title=f"run {run_id} · {result.run.evaluation}"))
    run = result.run
    out.print(
        f"run {run.id} {run.state}: {run.examples_done} examples, {run.rows_count} scores, "
        f"{run.errors_count} errors in {time.monotonic() - started:.1f}s"
    )


def drive_and_report(
    label: str, progress: bool, drive: Callable[[Callable[[Any], None] | None], RunRecord]
) -> None:
    """Drive a run under a progress bar, then print its summary, also when it failed."""
    from hypermetric.engine.progress import progress_display

    started = time.monotonic()
    try:
        with progress_display(progress, label) as on_progress:
            record = drive(on_progress)
    except RunFailedError as exc:
        if exc.run_id is not None:
            print_outcome(exc.run_id, started)
        raise
    print_outcome(record.id, started)


@click.command("run")
@click.argument("target")
@click.option("--version", "version_label", help="The version label of this run (e.g. model-v8).")
@click.option("--param", "-p", "params", multiple=True, metavar="K=V", help="A run parameter.")
@click.option("--dataset", help="Read this dataset (path or URI) instead of the runtime's.")
@click.option("--ray-address", envvar="RAY_ADDRESS", help="A Ray cluster; default: local Ray.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Cache every component's calls / bypass the call cache "
    "(default: cache the components declared with cache=True).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    metavar="K",
    help="Run each example K times (default: the runtime's epochs=).",
)
def run_cmd(
    target: str,
    version_label: str | None,
    params: tuple[str, ...],
    dataset: str | None,
    ray_address: str | None,
    progress: bool,
    cache: bool | None,
    epochs: int | None,
) -> None:
    """Run the @hm.runtime TARGET (MODULE:NAME or FILE.py:NAME) now and print its summary."""
    # Ray is imported when a command runs an evaluation, not for every command
    from hypermetric.engine.runner import load_runtime, run_runtime

    runtime = load_runtime(target)
    drive_and_report(
        runtime.name,
        progress,
        lambda on_progress: run_runtime(
            runtime,
            version=version_label,
            params=parse_params(params),
            dataset=dataset,
            ray_address=ray_address,
            progress=on_progress,
            cache=cache,
            epochs=epochs,
        ),
    )


@click.command("rescore")
@click.argument("run")
@click.option("--version", "version_label", help="The new run's label (default: RUN's).")
@click.option("--dataset", help="Read this dataset (path or URI) instead of RUN's.")
@click.option("--ray-address", envvar="RAY_ADDRESS", help="A Ray cluster; default: local Ray.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def rescore_cmd(
    run: str,
    version_label: str | None,
    dataset: str | None,
    ray_address: str | None,
    progress: bool,
) -> None:
    """Score RUN's stored outputs again with the evals of today's code.

    RUN is a run id or EVALUATION@VERSION (its latest successful run). A new run of the same
    evaluation replays RUN's component calls (no component runs, no model is called);
    `hypermetric compare RUN NEW` pairs their examples.
    """
    from hypermetric.engine.runner import rescore_run
    from hypermetric.query.compare import resolve_run

    run_id = resolve_run(run).id
    drive_and_report(
        f"rescore of run {run_id}",
        progress,
        lambda on_progress: rescore_run(
            run_id,
            version=version_label,
            dataset=dataset,
            ray_address=ray_address,
            progress=on_progress,
        ),
    )


def register(root: click.Group) -> None:
    """Add ``run`` and ``rescore`` to the root command."""
    root.add_command(run_cmd)
    root.add_command(rescore_cmd)
