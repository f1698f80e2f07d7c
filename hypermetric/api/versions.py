"""Code versions: a hash of the runtime's, each component's and each eval's source.

Components are found by walking the names a function's code refers to (and the code of
the components found), so a change to any step of the system under test changes the
run's code version, and each step keeps its own hash for finer questions.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

from hypermetric.api.evals import Eval

__all__ = ["discover_components", "source_hash", "version_info"]


def source_hash(fn: Callable[..., Any]) -> str:
    """A short hash of a function's source (its bytecode when the source is unavailable)."""
    target = inspect.unwrap(fn)
    try:
        data = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        data = marshal.dumps(code) if code is not None else repr(target).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def discover_components(fn: Callable[..., Any]) -> dict[str, Any]:
    """Components reachable from ``fn`` through the global names its code uses."""
    from hypermetric.api.component import Component

    found: dict[str, Component] = {}
    pending = [inspect.unwrap(fn)]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "__code__", None)
        if code is None:
            continue
        scope = getattr(current, "__globals__", {})
        for name in _names(code):
            value = scope.get(name)
            if isinstance(value, Component) and value.name not in found:
                found[value.name] = value
                pending.append(value.fn)
    return found


def _eval_info(ev: Eval) -> dict[str, Any]:
    return {
        "hash": source_hash(ev.fn),
        "higher_is_better": ev.higher_is_better,
        "params": {k: repr(v) for k, v in ev.params.items()},
        "mapping": dict(ev.mapping),
    }


def version_info(runtime: Any) -> dict[str, Any]:
    """The stored ``versions`` of a run: code hashes and each eval's direction."""
    components = discover_components(runtime.fn)
    evals: dict[str, dict[str, Any]] = {}
    owners: list[tuple[str, tuple[Eval, ...]]] = [(runtime.name, runtime.evals)]
    owners += [(c.name, c.evals) for c in components.values()]
    for owner, owned in owners:
        for ev in owned:
            info = evals.setdefault(ev.name, {**_eval_info(ev), "components": []})
            info["components"].append(owner)
    comp_hashes = {name: source_hash(c.fn) for name, c in sorted(components.items())}
    runtime_hash = source_hash(runtime.fn)
    blob = repr(
        (
            runtime_hash,
            sorted(comp_hashes.items()),
            sorted(
                (k, v["hash"], v["params"], sorted(v["mapping"].items())) for k, v in evals.items()
            ),
        )
    )
    return {
        "code_version": hashlib.sha256(blob.encode()).hexdigest()[:16],
        "runtime": runtime_hash,
        "components": comp_hashes,
        "evals": evals,
    }
