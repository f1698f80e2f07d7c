"""Serving the web view with uvicorn, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import os

from hypermetric.config import Settings, get_settings
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


def serve(host: str = "127.0.0.1", port: int = 8765, settings: Settings | None = None) -> None:
    """Serve the web view until interrupted; writes only if ``HYPERMETRIC_UI_TOKEN`` is set."""
    import uvicorn

    from hypermetric.ui.app import create_app

    app = create_app(
        settings or get_settings(),
        token=os.environ.get(TOKEN_ENV) or None,
        allowed_hosts=allowed_hosts_for(host),
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
