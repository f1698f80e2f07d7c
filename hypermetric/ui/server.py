"""Serving the web view with uvicorn, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
from collections.abc import Iterator

import uvicorn

from hypermetric.config import Settings, get_settings
from hypermetric.ui.app import create_app
from hypermetric.ui.writes import TOKEN_ENV

__all__ = ["LOOPBACK_NAMES", "allowed_hosts_for", "serve"]

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str) -> list[str] | None:
    """The ``Host`` headers a server bound to ``host`` answers: the loopback names when it
    is bound to a loopback address (a page of another site rebound to 127.0.0.1 by DNS then
    reads nothing); any (None) when it is bound to a public address on purpose."""
    return [*LOOPBACK_NAMES, host] if _is_loopback(host) else None


class _Server(uvicorn.Server):
    """uvicorn's server, returning normally once SIGINT or SIGTERM stopped it: a stop that
    was asked for is no failure (uvicorn's own handlers raise the signal again after the
    shutdown, so the process would end killed by it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop on SIGINT and SIGTERM while serving; the previous handlers after."""
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {number: signal.signal(number, self.handle_exit) for number in signals}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def serve(host: str = "127.0.0.1", port: int = 8765, settings: Settings | None = None) -> None:
    """Serve the web view until SIGINT or SIGTERM; writes only if ``HYPERMETRIC_UI_TOKEN``
    is set."""
    app = create_app(
        settings or get_settings(),
        token=os.environ.get(TOKEN_ENV) or None,
        allowed_hosts=allowed_hosts_for(host),
        warm=True,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False)
    _Server(config).run()
