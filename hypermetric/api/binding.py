"""Binding eval parameters by name: ``output``, the component's arguments, the example's
fields, then ``example`` (the whole row). ``hm.bind`` renames a parameter's source.

A plan is computed once per (component, eval); applying it per call is a tuple walk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypermetric.api.evals import Eval
from hypermetric.errors import BindingError

__all__ = ["ARG", "EXAMPLE", "FIELD", "OUTPUT", "Plan", "make_plan"]

OUTPUT, ARG, EXAMPLE, FIELD = "output", "arg", "example", "field"
_MISSING = object()


@dataclass(frozen=True)
class Plan:
    """How to fill each parameter of one eval for calls of one component."""

    component: str
    eval: Eval
    #: (parameter, kind, key, default or _MISSING)
    steps: tuple[tuple[str, str, str, Any], ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """The example fields this eval reads."""
        return tuple(key for _, kind, key, _ in self.steps if kind == FIELD)

    def arguments(
        self, output: Any, inputs: Mapping[str, Any], example: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The keyword arguments of one eval call. BindingError names what was available."""
        kwargs: dict[str, Any] = {}
        for param, kind, key, default in self.steps:
            if kind == OUTPUT:
                kwargs[param] = output
            elif kind == ARG:
                value = inputs.get(key, _MISSING)
                if value is _MISSING:
                    value = example.get(key, default)
                if value is _MISSING:
                    raise self._error(param, key, inputs, example)
                kwargs[param] = value
            elif kind == FIELD:
                value = example.get(key, default)
                if value is _MISSING:
                    raise self._error(param, key, inputs, example)
                kwargs[param] = value
            else:
                kwargs[param] = example
        return kwargs

    def _error(
        self, param: str, key: str, inputs: Mapping[str, Any], example: Mapping[str, Any]
    ) -> BindingError:
        source = "" if key == param else f" (bound to {key!r})"
        available = ["output", *inputs, *(k for k in example if k not in inputs), "example"]
        return BindingError(
            f"eval {self.eval.name!r} of component {self.component!r}: parameter {param!r}"
            f"{source} matches no value; available: {', '.join(available)}. "
            f"Rename the parameter or use hm.bind({self.eval.name}, {param}='<name>')"
        )


def make_plan(component: str, component_params: Sequence[str], ev: Eval) -> Plan:
    """The plan for ``ev`` scoring calls of a component with these parameter names."""
    steps = []
    params = set(component_params)
    for p in ev.signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind == p.POSITIONAL_ONLY:
            raise BindingError(
                f"eval {ev.name!r}: parameter {p.name!r} is positional-only; "
                "evals are called with keyword arguments"
            )
        source = ev.mapping.get(p.name, p.name)
        default = _MISSING if p.default is p.empty else p.default
        if source == "output":
            kind = OUTPUT
        elif source in params:
            kind = ARG
        elif source == "example":
            kind = EXAMPLE
        else:
            kind = FIELD
        steps.append((p.name, kind, source, default))
    if not steps:
        raise BindingError(f"eval {ev.name!r} takes no parameters; it needs at least `output`")
    return Plan(component=component, eval=ev, steps=tuple(steps))
