"""Hypermetric: scheduled, distributed evaluations of ML and LLM systems, every score kept.

The public API, re-exported here explicitly. Names backed by heavy libraries (Ray, DuckDB)
are imported on first use, so ``import hypermetric`` and decorating code stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from hypermetric import errors, metrics
from hypermetric.api.component import Component, component
from hypermetric.api.context import RunContext
from hypermetric.api.evals import Eval, bind, eval
from hypermetric.api.limits import RateLimit, RateLimited, Retry, Transient
from hypermetric.api.runtime import Runtime, rescore, resume, retry, runtime
from hypermetric.config import Settings, get_settings
from hypermetric.errors import HypermetricError

__all__ = [
    "Component",
    "Eval",
    "HypermetricError",
    "RateLimit",
    "RateLimited",
    "Retry",
    "RunContext",
    "RunResult",
    "Runtime",
    "Settings",
    "Transient",
    "bind",
    "compare",
    "component",
    "connect",
    "errors",
    "eval",
    "get_settings",
    "history",
    "metrics",
    "power",
    "rescore",
    "resume",
    "retry",
    "runtime",
    "sql",
]

_LAZY = {
    "RunResult": ("hypermetric.query.result", "RunResult"),
    "sql": ("hypermetric.query.connection", "sql"),
    "connect": ("hypermetric.query.connection", "connect"),
    "compare": ("hypermetric.query.compare", "compare"),
    "history": ("hypermetric.query.history", "history"),
    "power": ("hypermetric.query.power", "power"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hypermetric' has no attribute {name!r}")
