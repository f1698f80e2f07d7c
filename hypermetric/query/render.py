"""Shared formatting of query results for terminals: numbers, intervals, rich tables."""

from __future__ import annotations

import io
import math

from rich.console import Console
from rich.table import Table

__all__ = ["fmt_interval", "fmt_num", "fmt_p", "table_text"]


def fmt_num(value: float | None, digits: int = 4, *, signed: bool = False) -> str:
    """A number with ``digits`` decimals (blank for None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_interval(low: float | None, high: float | None, digits: int = 4) -> str:
    """``[low, high]`` (blank when either end is unknown)."""
    if low is None or high is None:
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def fmt_p(value: float | None) -> str:
    """A p-value: 3 significant digits, ``<1e-16`` below what doubles resolve."""
    if value is None:
        return ""
    if value < 1e-16:
        return "<1e-16"
    return f"{value:.3g}"


def table_text(table: Table, width: int = 140) -> str:
    """A rich table as plain text."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, no_color=True, color_system=None).print(table)
    return buffer.getvalue()
