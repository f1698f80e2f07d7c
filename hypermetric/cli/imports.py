"""``hypermetric import``: logs of other evaluation tools as runs (:mod:`hypermetric.importing`)."""

from __future__ import annotations

from collections.abc import Sequence

import click

__all__ = ["import_group", "register"]

_EVALUATION = click.option(
    "--evaluation",
    "-e",
    help="Import into this evaluation (default: the log's task name).",
)
_VERSION = click.option("--version", help="The runs' version label (default: the model).")


def _name(value: str | None, hint: str) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("give a non-empty name", param_hint=hint)
    return value.strip() if value is not None else None


def _report(outcomes: Sequence[object]) -> None:
    from hypermetric.importing import ImportOutcome

    for outcome in outcomes:
        assert isinstance(outcome, ImportOutcome)
        run, log = outcome.run, outcome.log
        if not outcome.created:
            click.echo(
                f"already imported: {log.source} is run {run.id} of {run.evaluation} "
                f"({run.state}); nothing added"
            )
            continue
        click.echo(
            f"imported {log.source} as run {run.id} of {run.evaluation} "
            f"(version {run.version_label or '-'}): {len(log.samples)} samples, "
            f"{run.rows_count} scores, {run.errors_count} errors"
        )


@click.group("import")
def import_group() -> None:
    """Bring history in: logs of other evaluation tools become runs (one per log)."""


@import_group.command("inspect")
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_EVALUATION
@_VERSION
def inspect_cmd(logs: tuple[str, ...], evaluation: str | None, version: str | None) -> None:
    """Import Inspect AI logs (.eval or .json), each as one run of its task.

    Every log is read and checked before any is written; importing a log again adds nothing.
    """
    from hypermetric.importing import import_inspect

    _report(
        import_inspect(
            logs,
            evaluation=_name(evaluation, "--evaluation"),
            version=_name(version, "--version"),
        )
    )


@import_group.command("lm-eval")
@click.argument("directory", type=click.Path(file_okay=False))
@_EVALUATION
@_VERSION
def lmeval_cmd(directory: str, evaluation: str | None, version: str | None) -> None:
    """Import lm-evaluation-harness output (results_*.json and samples_*.jsonl, written
    with --log_samples), one run per task of each results file.

    The whole folder is read and checked before anything is written; importing it again
    adds nothing.
    """
    from hypermetric.importing import import_lmeval

    _report(
        import_lmeval(
            directory,
            evaluation=_name(evaluation, "--evaluation"),
            version=_name(version, "--version"),
        )
    )


def register(root: click.Group) -> None:
    """Add ``import`` to the root command."""
    root.add_command(import_group)
