"""Values as the web view's JSON and pages show them: records to dicts, times as text."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from hypermetric.masking import masker
from hypermetric.query.output import json_value

__all__ = ["fmt_time", "jsonable", "masked_all"]


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
    if isinstance(value, dict):
        return {
            str(k) if not isinstance(k, tuple) else "/".join(map(str, k)): jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return json_value(value)


def masked_all(texts: list[str | None]) -> list[str | None]:
    """Each text masked as :func:`hypermetric.masking.masked` masks it, the environment's
    credentials read once for them all."""
    mask = masker()
    return [mask(t) if t else t for t in texts]
