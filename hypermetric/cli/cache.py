"""``hypermetric cache``: the call cache of components declared with ``cache=True``."""

from __future__ import annotations

import click

from hypermetric.config import get_settings
from hypermetric.storage.cache import StoreCache
from hypermetric.storage.files import store_for

__all__ = ["cache_group", "register"]


@click.group("cache")
def cache_group() -> None:
    """Manage the call cache (component outputs kept in the configured storage)."""


@cache_group.command("clear")
@click.option("--component", help="Only this component's cached calls (its name).")
def clear_cmd(component: str | None) -> None:
    """Delete cached calls: every component's, or one component's with --component."""
    if component is not None and not component.strip():
        raise click.BadParameter("give a component name", param_hint="--component")
    store = store_for(get_settings())
    gone = StoreCache(store).clear(component)
    what = f"component {component!r}" if component else "every component"
    click.echo(f"cleared {gone} cached calls of {what} under {store.shown}")


def register(root: click.Group) -> None:
    """Add ``cache`` to the root command."""
    root.add_command(cache_group)
