"""``@hm.component``: a step of the system under test whose every call is scored.

Outside a run a component is the plain function. Inside one, each call is recorded (inputs
by parameter name, output or error, latency) for the evaluators to score. A component that
calls a model API may also take a shared ``rate_limit``, a ``retry`` policy and ``cache=True``
(:mod:`hypermetric.api.calls` makes such calls); one without them runs as a plain call.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, overload

from hypermetric.api import calls
from hypermetric.api.binding import Plan, make_plan
from hypermetric.api.context import CallRecorder, current_recorder
from hypermetric.api.evals import Eval, as_eval
from hypermetric.api.limits import RateLimit, Retry, Transient
from hypermetric.errors import DefinitionError

__all__ = ["CAUGHT", "Component", "component", "describe_error", "resolve_import"]

#: What a call of user code may raise and still be one error row: any exception, and an
#: exit or interrupt raised by the code itself (in a worker process it would otherwise end
#: the process, and its unit would be driven or scored again, and again).
CAUGHT: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)


def describe_error(exc: BaseException) -> str:
    """An exception as the one line stored in an error row."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def resolve_import(module: str, qualname: str) -> Any:
    """Import ``module`` and walk ``qualname`` (pickling by reference)."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def working_dir_importable() -> None:
    """Put the working directory first on the import path, as ``python -m`` does, so that
    ``evals.qa:capitals`` names a project's ``evals/qa.py`` from its folder (a console
    script's path starts with its ``bin`` folder instead). Ray hands a process's working
    directory to the workers of its runs, and the scheduler to the run processes it starts.
    """
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def importable(obj: Any) -> bool:
    """True when ``obj`` can be found again by its module and qualified name."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return False
    try:
        return resolve_import(module, qualname) is obj
    except Exception:
        return False


class Component:
    """A decorated step of the system under test, with the evals that score its calls."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        evals: Iterable[Any] = (),
        rate_limit: RateLimit | None = None,
        retry: Retry | None = None,
        cache: bool = False,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"@hm.component decorates a function, not {fn!r}")
        self.fn = fn
        self.name = name or fn.__name__
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise DefinitionError(
                f"component {self.name!r}: rate_limit takes hm.RateLimit(name, per_second=...), "
                f"not {rate_limit!r}"
            )
        if retry is not None and not isinstance(retry, Retry):
            raise DefinitionError(
                f"component {self.name!r}: retry takes hm.Retry(attempts=...), not {retry!r}"
            )
        if not isinstance(cache, bool):
            raise DefinitionError(f"component {self.name!r}: cache is True or False")
        self.rate_limit, self.retry, self.cache = rate_limit, retry, cache
        #: calls go through :mod:`hypermetric.api.calls` (plain components never do)
        self.guarded = rate_limit is not None or retry is not None or cache
        self._code_hash: str | None = None
        self.evals: tuple[Eval, ...] = tuple(as_eval(e) for e in evals)
        self.is_async = inspect.iscoroutinefunction(fn)
        signature = inspect.signature(fn)
        self.params: tuple[str, ...] = tuple(
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        self.defaults = {
            p.name: p.default for p in signature.parameters.values() if p.default is not p.empty
        }
        self._simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            for p in signature.parameters.values()
        )
        # the common case, f(a, b) called positionally: inputs are a plain zip
        self._plain = self._simple and not self.defaults
        self._signature = signature
        seen: set[str] = set()
        for ev in self.evals:
            if ev.name in seen:
                raise DefinitionError(
                    f"component {self.name!r} has two evals named {ev.name!r}; "
                    "name one differently with hm.bind(fn, name=...)"
                )
            seen.add(ev.name)
        # validates every eval's parameters now, at decoration time
        self.plans: tuple[Plan, ...] = tuple(
            make_plan(self.name, self.params, e) for e in self.evals
        )
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<component {self.name} evals={[e.name for e in self.evals]}>"

    def __reduce__(self) -> Any:
        if importable(self):
            return (resolve_import, (self.__module__, getattr(self, "__qualname__", self.name)))
        return (_rebuild, (self.fn, self.name, self.evals, self.rate_limit, self.retry, self.cache))

    @property
    def code_hash(self) -> str:
        """The hash of the component's code: its source, and the helpers and constants of
        the user's it reaches (part of its calls' cache key and of a run's lineage)."""
        if self._code_hash is None:
            from hypermetric.api.versions import code_hash

            self._code_hash = code_hash(self.fn)
        return self._code_hash

    def _inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._plain and not kwargs and len(args) == len(self.params):
            return dict(zip(self.params, args))  # noqa: B905 - the lengths are equal
        if self._simple and len(args) <= len(self.params):
            inputs = dict(self.defaults) if self.defaults else {}
            inputs.update(zip(self.params, args, strict=False))
            inputs.update(kwargs)
            return inputs
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorder = current_recorder.get()
        if recorder is None:
            return self.fn(*args, **kwargs)
        if self.is_async:
            return self._call_async(recorder, args, kwargs)
        index = recorder.next_index(self)
        inputs = self._inputs(args, kwargs)
        if self.guarded or recorder.guard_all:
            return calls.call_sync(self, recorder, index, inputs, args, kwargs)
        start = time.perf_counter()
        try:
            output = self.fn(*args, **kwargs)
        except CAUGHT as exc:
            if isinstance(exc, Transient):  # "retry me", also without a retry policy
                return calls.call_sync(self, recorder, index, inputs, args, kwargs, exc)
            elapsed = (time.perf_counter() - start) * 1000.0
            recorder.add(self.name, index, inputs, None, describe_error(exc), elapsed)
            raise
        recorder.add(self.name, index, inputs, output, None, (time.perf_counter() - start) * 1e3)
        return output

    async def _call_async(
        self, recorder: CallRecorder, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        index = recorder.next_index(self)
        inputs = self._inputs(args, kwargs)
        if self.guarded or recorder.guard_all:
            return await calls.call_async(self, recorder, index, inputs, args, kwargs)
        start = time.perf_counter()
        try:
            output = await self.fn(*args, **kwargs)
        except CAUGHT as exc:
            if isinstance(exc, Transient):
                return await calls.call_async(self, recorder, index, inputs, args, kwargs, exc)
            elapsed = (time.perf_counter() - start) * 1000.0
            recorder.add(self.name, index, inputs, None, describe_error(exc), elapsed)
            raise
        recorder.add(self.name, index, inputs, output, None, (time.perf_counter() - start) * 1e3)
        return output


def _rebuild(
    fn: Callable[..., Any],
    name: str,
    evals: tuple[Eval, ...],
    rate_limit: RateLimit | None = None,
    retry: Retry | None = None,
    cache: bool = False,
) -> Component:
    return Component(fn, name=name, evals=evals, rate_limit=rate_limit, retry=retry, cache=cache)


@overload
def component(fn: Callable[..., Any], /) -> Component: ...
@overload
def component(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    evals: Iterable[Any] = (),
    rate_limit: RateLimit | None = None,
    retry: Retry | None = None,
    cache: bool = False,
) -> Callable[[Callable[..., Any]], Component]: ...


def component(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    evals: Iterable[Any] = (),
    rate_limit: RateLimit | None = None,
    retry: Retry | None = None,
    cache: bool = False,
) -> Component | Callable[[Callable[..., Any]], Component]:
    """Declare a component: ``@hm.component(evals=[exact_match])``.

    Each eval is a function (or ``hm.bind``/``hm.eval`` result) whose parameters are bound
    by name to the call's output, the component's arguments and the example's fields.
    ``rate_limit`` (an :class:`~hypermetric.RateLimit`) shares a budget of calls by name
    across the cluster; ``retry`` (a :class:`~hypermetric.Retry`) tries a raising call
    again; ``cache=True`` stores each call's output by its code hash, arguments and the
    run's params, and a later call with the same key is not made again.
    """
    evals = tuple(evals)

    def wrap(f: Callable[..., Any]) -> Component:
        return Component(f, name=name, evals=evals, rate_limit=rate_limit, retry=retry, cache=cache)

    return wrap if fn is None else wrap(fn)
