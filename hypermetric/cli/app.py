"""The root command: global options, and errors as one line with a non-zero exit.

Nothing this process prints on its own behalf shows a credential: the error line and the
log records no handler was set up for are masked (:mod:`hypermetric.masking`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from hypermetric.api.component import working_dir_importable
from hypermetric.errors import HypermetricError
from hypermetric.masking import MaskingFormatter, masked

__all__ = ["cli", "main"]


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, or its type for an empty one."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, HypermetricError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class RootGroup(click.Group):
    """Turns any exception into ``error: ...`` on stderr and exit 1, unless ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            if ctx.meta.get("hypermetric.debug"):
                raise
            hint = "" if isinstance(exc, HypermetricError) else " (run with --debug for details)"
            click.echo(f"error: {masked(one_line(exc))}{hint}", err=True)
            ctx.exit(1)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    envvar="HYPERMETRIC_DEBUG",
    help="Show full tracebacks on errors.",
)
@click.version_option(package_name="hypermetric")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Hypermetric: scheduled, distributed evaluations with every score kept.

    Settings come from HYPERMETRIC_HOME, HYPERMETRIC_DB_URL, HYPERMETRIC_STORAGE and
    RAY_ADDRESS (or the same keys in <home>/config.toml).
    """
    ctx.meta["hypermetric.debug"] = debug
    logging.lastResort = _masked_last_resort()
    working_dir_importable()


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (which CLI test runners replace)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record as one line."""
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging's own rule: a failed write is reported, never raised
            self.handleError(record)


def _masked_last_resort() -> logging.Handler:
    """Python's handler of last resort (warnings and errors of unconfigured loggers), masked."""
    handler = _StderrHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(MaskingFormatter("%(message)s"))
    return handler


def _register() -> None:
    from hypermetric.cli import (
        cache,
        db,
        evals,
        imports,
        query,
        quickstart,
        run,
        runs,
        scheduler,
        storage,
        ui,
    )

    for module in (cache, db, evals, imports, query, quickstart, run, runs, scheduler, storage, ui):
        module.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hypermetric`` script."""
    cli.main(args=argv, prog_name="hypermetric", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
    os._exit(0)
