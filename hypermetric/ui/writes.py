"""Writes from the web view: trigger a run, backfill, pause and unpause — with a token only.

The server takes writes only when ``HYPERMETRIC_UI_TOKEN`` is set where it runs, and only
from a request that sends the same token in its ``Authorization: Bearer`` header:

- no token on the server: every write answers 403 (writes are off);
- no ``Authorization`` header: 401;
- a different token: 403 (compared in constant time).

A browser never adds that header by itself (a cookie it would), and the server sends no
CORS headers, so another site cannot make a visitor's browser write (no CSRF). Writes are
POSTs with a JSON body; nothing in a request names a file.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from hypermetric.catalog.db import database
from hypermetric.config import Settings
from hypermetric.errors import HypermetricError

__all__ = ["TOKEN_ENV", "Refusal", "check_token", "do_write"]

TOKEN_ENV = "HYPERMETRIC_UI_TOKEN"
ACTIONS = ("trigger", "backfill", "pause", "unpause")


@dataclass(frozen=True)
class Refusal:
    """Why a write was refused, as an HTTP status and one line."""

    status: int
    message: str


def check_token(server_token: str | None, authorization: str | None) -> Refusal | None:
    """None when the request may write; else the refusal to answer with."""
    if not server_token:
        return Refusal(
            403,
            f"writes are off: start `hypermetric ui` with {TOKEN_ENV} set, and send that "
            "token in an `Authorization: Bearer TOKEN` header",
        )
    if not authorization:
        return Refusal(401, "this write needs the token: send `Authorization: Bearer TOKEN`")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), server_token.encode()
    ):
        return Refusal(403, f"wrong token: send the server's {TOKEN_ENV} as `Bearer TOKEN`")
    return None


def _text(body: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key!r} is missing from the JSON body")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, not {type(value).__name__}")
    return value


def do_write(settings: Settings, action: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Carry out ``action`` on evaluation ``name``; returns what was done (JSON-ready).

    ValueError for a malformed body; HypermetricError for what the catalog refuses.
    """
    from hypermetric.scheduler import backfill as backfills
    from hypermetric.scheduler import definitions

    db = database(settings)
    if action == "pause":
        return {"evaluation": definitions.pause(db, name).name, "paused": True}
    if action == "unpause":
        return {"evaluation": definitions.unpause(db, name).name, "paused": False}
    if action == "trigger":
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError("'params' must be a JSON object of run parameters")
        run = definitions.trigger(db, name, params=params, version_label=_text(body, "version"))
        return {"evaluation": name, "run_id": run.id, "state": run.state}
    if action == "backfill":
        reprocess = _text(body, "reprocess") or "none"
        if reprocess not in ("none", "failed", "all"):
            raise ValueError(f"'reprocess' must be none, failed or all, not {reprocess!r}")
        result = backfills.backfill(
            db,
            name,
            _text(body, "start", required=True) or "",
            _text(body, "end", required=True) or "",
            reprocess=reprocess,
            dry_run=bool(body.get("dry_run", False)),
        )
        return {
            "evaluation": name,
            "run_ids": list(result.run_ids),
            "intervals": len(result.plan.actions),
            "skipped": result.plan.count("skip"),
            "dry_run": result.dry_run,
        }
    raise HypermetricError(f"unknown write {action!r}; one of {', '.join(ACTIONS)}")
