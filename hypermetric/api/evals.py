"""Evals: metric functions that score every call of a component.

An eval is a plain function; :func:`eval` and :func:`bind` wrap one into an :class:`Eval`,
which carries its name, how its parameters are bound, whether higher is better and the
parameters it was built with (``recall_at_k(5)`` carries ``{"k": 5}``), so runs are
reproducible and compare/history know which direction is an improvement.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, overload

from hypermetric.errors import DefinitionError

__all__ = ["Eval", "as_eval", "bind", "eval"]


@dataclass(frozen=True, eq=False)
class Eval:
    """A metric function with its name, parameter mapping and direction.

    Calling an Eval calls the function, so built-in evals work as plain functions too.
    """

    fn: Callable[..., Any]
    name: str
    mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    higher_is_better: bool = True
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    description: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise DefinitionError(f"eval {self.name!r} is not callable: {self.fn!r}")
        if not self.name or not isinstance(self.name, str):
            raise DefinitionError(f"eval {self.fn!r} needs a non-empty string name")
        names = self.parameter_names
        unknown = [p for p in self.mapping if p not in names]
        if unknown:
            raise DefinitionError(
                f"bind() of eval {self.name!r} names parameters {unknown} it does not have; "
                f"its parameters are {list(names)}"
            )
        for source in self.mapping.values():
            if not isinstance(source, str) or not source:
                raise DefinitionError(
                    f"bind() of eval {self.name!r}: each mapping value must be a field name"
                )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> Any:
        # the read-only mapping views do not pickle: rebuild them from plain dicts; the class
        # and every field travel, so a subclass (with fields of its own) stays what it is
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["mapping"], state["params"] = dict(self.mapping), dict(self.params)
        return (_rebuild, (type(self), state))

    @property
    def signature(self) -> inspect.Signature:
        """The wrapped function's signature."""
        return inspect.signature(self.fn)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the parameters that are bound per call."""
        out = []
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out.append(p.name)
        return tuple(out)


def _rebuild(cls: type[Eval], state: dict[str, Any]) -> Eval:
    state["mapping"] = MappingProxyType(state["mapping"])
    state["params"] = MappingProxyType(state["params"])
    return cls(**state)


def as_eval(obj: Any) -> Eval:
    """An :class:`Eval` for ``obj``: itself, or a plain function wrapped with its name."""
    if isinstance(obj, Eval):
        return obj
    if not callable(obj):
        raise DefinitionError(
            f"evals must be functions or hm.bind(...) results, not {type(obj).__name__}: {obj!r}"
        )
    name = getattr(obj, "__name__", None)
    if not name or name == "<lambda>":
        raise DefinitionError(
            "an eval needs a name: use a def'd function, or hm.eval(fn, name='...')"
        )
    return Eval(
        fn=obj,
        name=name,
        higher_is_better=bool(getattr(obj, "higher_is_better", True)),
    )


@overload
def eval(fn: Callable[..., Any], /) -> Eval: ...
@overload
def eval(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    higher_is_better: bool = True,
    params: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[Callable[..., Any]], Eval]: ...
@overload
def eval(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    higher_is_better: bool = True,
    params: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Eval: ...


def eval(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    higher_is_better: bool = True,
    params: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Eval | Callable[[Callable[..., Any]], Eval]:
    """Declare an eval: its name, and whether higher scores are better (the default).

    ``@hm.eval(higher_is_better=False) def latency_ms(output): ...`` tells compare and
    history that a drop is an improvement.
    """

    def wrap(f: Callable[..., Any]) -> Eval:
        return Eval(
            fn=f,
            name=name or getattr(f, "__name__", "") or "",
            higher_is_better=higher_is_better,
            params=MappingProxyType(dict(params or {})),
            description=description or inspect.getdoc(f),
        )

    return wrap if fn is None else wrap(fn)


def bind(fn: Callable[..., Any] | Eval, /, name: str | None = None, **mapping: str) -> Eval:
    """Bind an eval's parameters to other names: ``hm.bind(exact_match, answer="gold")``.

    Each keyword maps a parameter of the eval to the name of a value available at call
    time: ``output``, one of the component's arguments, an example field, or ``example``.
    """
    base = as_eval(fn)
    merged = {**base.mapping, **mapping}
    return Eval(
        fn=base.fn,
        name=name or base.name,
        mapping=MappingProxyType(merged),
        higher_is_better=base.higher_is_better,
        params=base.params,
        description=base.description,
    )
