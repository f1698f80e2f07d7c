"""Code versions: a hash of the runtime's, each component's and each eval's source.

A run records the components and evals that ran, however they were reached (helpers,
other modules, methods, closures): each evaluator reports a component the first time it
scores one of its calls, and the run merges it into its ``versions``. Before the run (and
for ``evals register``) they are also found statically by walking what the runtime's code
refers to. So a change to any step of the system under test changes the run's code
version, each step keeps its own hash for finer questions, and compare and history know
every eval's direction.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import inspect
import marshal
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from types import CodeType, ModuleType
from typing import Any

from hypermetric.api.evals import Eval

__all__ = [
    "component_lineage",
    "discover_components",
    "merge_lineage",
    "source_hash",
    "version_info",
]


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


#: the most objects a static walk visits (it is a best effort: the run records what ran)
_MAX_VISITS = 5000


@functools.cache
def _foreign_roots() -> tuple[str, ...]:
    """Where code that is not the user's lives: the standard library, installed packages,
    and Hypermetric itself."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(sorted(roots))


def _is_users(obj: Any) -> bool:
    """True for a function, class or module of the user's own code."""
    name = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
    if (name or "").startswith("hypermetric.examples"):
        return True  # the quickstart's demo is user code shipped with Hypermetric
    module = sys.modules.get(name or "")
    if module is None:
        return False
    path = getattr(module, "__file__", None)
    if path is None:
        return name == "__main__"  # a notebook or an interactive session
    return not os.path.abspath(path).startswith(_foreign_roots())


def _referenced(current: Any) -> Iterator[Any]:
    """What a function's code refers to: its globals by name, attributes of the modules
    among them (``helpers.pipeline``), its closure cells and defaults."""
    code = current.__code__
    scope = getattr(current, "__globals__", {})
    names = list(dict.fromkeys(_names(code)))
    for name in names:
        value = scope.get(name)
        if isinstance(value, ModuleType) and _is_users(value):
            yield from (getattr(value, attr, None) for attr in names)
        elif value is not None:
            yield value
    for cell in current.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            yield cell.cell_contents
    yield from current.__defaults__ or ()


def _callables(value: Any) -> Iterator[Any]:
    """The functions behind a value: a function, a method's function, a partial's, or
    the methods of a class of the user's."""
    if isinstance(value, functools.partial):
        value = value.func
    if inspect.ismethod(value):
        value = value.__func__
    if inspect.isclass(value) and _is_users(value):
        for member in vars(value).values():
            yield from _callables(getattr(member, "__func__", member))
    elif inspect.isfunction(value) and _is_users(value):
        yield value


def discover_components(fn: Callable[..., Any]) -> dict[str, Any]:
    """Components reachable from ``fn`` in the user's code: through the names its code
    uses, the helpers, classes, methods and modules those name, and closures.

    A static, cheap, best-effort walk (``evals register`` shows what it finds); a run also
    records every component that actually ran, however it was reached.
    """
    from hypermetric.api.component import Component

    found: dict[str, Component] = {}
    pending: list[Any] = [inspect.unwrap(fn)]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_VISITS:
        current = pending.pop()
        if id(current) in seen or getattr(current, "__code__", None) is None:
            continue
        seen.add(id(current))
        for value in _referenced(current):
            if isinstance(value, Component):
                if value.name not in found:
                    found[value.name] = value
                    pending.append(value.fn)
            else:
                pending.extend(_callables(value))
    return found


def _eval_info(ev: Eval) -> dict[str, Any]:
    return {
        "hash": source_hash(ev.fn),
        "higher_is_better": ev.higher_is_better,
        "params": {k: repr(v) for k, v in ev.params.items()},
        "mapping": dict(ev.mapping),
    }


def component_lineage(component: Any) -> dict[str, Any]:
    """What a run records of a component that ran: its hash and its evals' hashes,
    directions and parameters."""
    return {
        "hash": source_hash(component.fn),
        "evals": {ev.name: _eval_info(ev) for ev in component.evals},
    }


def _add_component(versions: dict[str, Any], name: str, lineage: dict[str, Any]) -> None:
    versions["components"][name] = lineage["hash"]
    for ev_name, info in lineage["evals"].items():
        entry = versions["evals"].setdefault(ev_name, {**info, "components": []})
        if name not in entry["components"]:
            entry["components"].append(name)


def _code_version(versions: dict[str, Any]) -> str:
    evals = versions["evals"]
    blob = repr(
        (
            versions["runtime"],
            sorted(versions["components"].items()),
            sorted(
                (k, v["hash"], v["params"], sorted(v["mapping"].items())) for k, v in evals.items()
            ),
        )
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def version_info(runtime: Any) -> dict[str, Any]:
    """The stored ``versions`` of a run, found statically: code hashes and each eval's
    direction (the run adds the components it finds running, see :func:`merge_lineage`)."""
    versions: dict[str, Any] = {
        "code_version": "",
        "runtime": source_hash(runtime.fn),
        "components": {},
        "evals": {},
    }
    for ev in runtime.evals:
        entry = versions["evals"].setdefault(ev.name, {**_eval_info(ev), "components": []})
        entry["components"].append(runtime.name)
    for name, component in sorted(discover_components(runtime.fn).items()):
        _add_component(versions, name, component_lineage(component))
    versions["components"] = dict(sorted(versions["components"].items()))
    versions["code_version"] = _code_version(versions)
    return versions


def merge_lineage(
    versions: dict[str, Any] | None, observed: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``versions`` with the components a run found running (name -> their
    :func:`component_lineage`), and the code version over all of them."""
    merged = copy.deepcopy(versions) if versions else {}
    merged.setdefault("runtime", "")
    merged.setdefault("components", {})
    merged.setdefault("evals", {})
    for name, lineage in sorted(observed.items()):
        _add_component(merged, name, lineage)
    merged["components"] = dict(sorted(merged["components"].items()))
    merged["code_version"] = _code_version(merged)
    return merged
