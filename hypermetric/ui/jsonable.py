"""Values as the web view's JSON and pages show them: records to dicts, times as text."""

from __future__ import annotations

import base64
import dataclasses
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from hypermetric.masking import masked

__all__ = ["fmt_time", "jsonable", "masked_all"]

#: joins texts masked in one pass: every masking pattern stops at a line break, and no
#: credential holds this
_SEPARATOR = "\n\x1e\n"


def fmt_time(value: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS`` (blank for None)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses as dicts, times as ISO text and NaN/infinity as None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("pages", "shifts"):  # properties the pages use too
            if hasattr(type(value), name):
                out[name] = getattr(value, name)
        return out
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {
            str(k) if not isinstance(k, tuple) else "/".join(map(str, k)): jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def masked_all(texts: list[str | None]) -> list[str | None]:
    """Each text masked as :func:`hypermetric.masking.masked` masks it, in one call (it
    reads the environment's credentials on each call: once a page, not once a cell)."""
    present = [t for t in texts if t]
    if not present:
        return list(texts)
    done = iter(masked(_SEPARATOR.join(present)).split(_SEPARATOR))
    return [next(done) if t else t for t in texts]
