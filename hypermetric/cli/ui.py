"""``hypermetric ui``: the web view."""

from __future__ import annotations

import os
import socket

import click

from hypermetric.errors import ConfigError

__all__ = ["register", "ui_cmd"]


def _check_free(host: str, port: int) -> None:
    """One clear line when the address is taken or cannot be bound, before uvicorn says so
    in its own words."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another "
                "address with --host/--port, e.g. --port 8766"
            ) from None


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
def ui_cmd(host: str, port: int) -> None:
    """Serve the web view: the runs grid, metric history, runs, compare and SQL.

    Read-only unless HYPERMETRIC_UI_TOKEN is set here: then writes (trigger, backfill,
    pause) need that token in an `Authorization: Bearer` header. Stop it with Ctrl-C.
    """
    from hypermetric.catalog.db import database
    from hypermetric.ui.server import serve

    database()  # a DB that cannot be opened is one clear line, before the server starts
    _check_free(host, port)
    writes = (
        "writes need HYPERMETRIC_UI_TOKEN"
        if os.environ.get("HYPERMETRIC_UI_TOKEN")
        else ("read-only (set HYPERMETRIC_UI_TOKEN to allow writes)")
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Hypermetric web view on http://{shown}:{port}/ ({writes}); Ctrl-C stops it")
    serve(host, port)


def register(root: click.Group) -> None:
    """Add ``ui`` to the root command."""
    root.add_command(ui_cmd)
