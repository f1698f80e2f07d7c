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
    "code_hash",
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


#: module-level values whose text is part of the code: a prompt, a model name, a limit
_CONSTANTS = (str, bytes, int, float, complex, bool, type(None))


def _constant(value: Any) -> str | None:
    """The text of a constant the code reads (a tuple of constants too), else None.

    Mutable values (a list, a dict, a client) are left out: they may change as the code
    runs, and the hash must be the same in every process and every run of the same code."""
    if isinstance(value, _CONSTANTS):
        return repr(value)
    small = type(value) is tuple and len(value) <= 1000
    if small and all(isinstance(v, _CONSTANTS) for v in value):
        return repr(value)
    return None


def code_hash(fn: Callable[..., Any], *, into_components: bool = True) -> str:
    """:func:`source_hash` of ``fn`` extended by what its output depends on in the user's
    code: the helper functions, methods and classes it reaches (transitively), and the
    constants they read (module globals, closure cells, defaults), so editing a prompt
    template in a helper changes the hash. A function that reaches nothing of the user's
    keeps its plain source hash. ``into_components``: follow the components it calls too
    (a runtime's hash leaves them out: each has its own)."""
    from hypermetric.api.component import Component

    root = inspect.unwrap(fn)
    if not _is_users(root):
        return source_hash(root)  # a built-in metric: its source says it all
    parts: set[str] = set()
    pending: list[Any] = [root]
    seen: set[int] = {id(root)}
    while pending and len(seen) < _MAX_VISITS:
        current = pending.pop()
        if getattr(current, "__code__", None) is None:
            continue
        # the root's own defaults are its call's arguments, in the key already
        for name, value in _named(current, defaults=current is not root):
            if isinstance(value, Component):
                if not into_components:
                    continue
                value = value.fn
            text = _constant(value)
            if text is not None:
                digest = hashlib.sha256(text.encode(errors="replace")).hexdigest()[:16]
                parts.add(f"{name}={digest}")
                continue
            for found in _callables(value):
                found = inspect.unwrap(found)
                if id(found) not in seen:
                    seen.add(id(found))
                    pending.append(found)
                    where = f"{found.__module__}.{found.__qualname__}"
                    parts.add(f"{where}:{source_hash(found)}")
    own = source_hash(root)
    if not parts:
        return own
    blob = "\n".join([own, *sorted(parts)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _named(current: Any, *, defaults: bool = True) -> Iterator[tuple[str, Any]]:
    """What a function's code refers to, each with the name it is read by: its globals,
    attributes of the user's modules among them (``helpers.pipeline``), its closure cells
    and (with ``defaults``) its defaults; constants only from the user's modules."""
    code = current.__code__
    where = f"{current.__module__}.{current.__qualname__}"
    scope = getattr(current, "__globals__", {})
    module = scope.get("__name__", current.__module__)
    # a global constant counts only in a module of the user's (once per function, not per
    # name); functions and classes are filtered where they are followed (_callables)
    home = sys.modules.get(module)
    own_constants = home is not None and _is_users(home)
    names = list(dict.fromkeys(_names(code)))
    for name in names:
        if name not in scope:
            continue
        value = scope[name]
        if isinstance(value, ModuleType):
            if _is_users(value):
                for attr in names:
                    if hasattr(value, attr):
                        yield f"{value.__name__}.{attr}", getattr(value, attr)
        elif own_constants or _constant(value) is None:
            yield f"{module}.{name}", value
    for var, cell in zip(code.co_freevars, current.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):  # an empty cell
            yield f"{where}.{var}", cell.cell_contents
    if not defaults:
        return
    for i, default in enumerate(current.__defaults__ or ()):
        yield f"{where}.<default {i}>", default
    for key, default in (current.__kwdefaults__ or {}).items():
        yield f"{where}.{key}", default


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
    if name == "__main__":
        # a script, a notebook or an interactive session; in a Ray worker, a function of
        # theirs arrives by value and names a __main__ that is Ray's: still the user's
        return True
    module = sys.modules.get(name or "")
    if module is None:
        return False
    path = getattr(module, "__file__", None)
    return path is not None and not os.path.abspath(path).startswith(_foreign_roots())


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
        for _, value in _named(current):
            if isinstance(value, Component):
                if value.name not in found:
                    found[value.name] = value
                    pending.append(value.fn)
            else:
                pending.extend(_callables(value))
    return found


def _eval_info(ev: Eval) -> dict[str, Any]:
    return {
        "hash": code_hash(ev.fn),
        "higher_is_better": ev.higher_is_better,
        "params": {k: repr(v) for k, v in ev.params.items()},
        "mapping": dict(ev.mapping),
    }


def component_lineage(component: Any) -> dict[str, Any]:
    """What a run records of a component that ran: its hash and its evals' hashes,
    directions and parameters."""
    return {
        "hash": component.code_hash,
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
        "runtime": code_hash(runtime.fn, into_components=False),
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
