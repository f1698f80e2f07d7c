"""What a runtime sees of its run, and the per-example recorder of component calls."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = ["CallRecord", "ExampleRecorder", "RunContext", "current_recorder"]


@dataclass(frozen=True)
class RunContext:
    """The run a runtime (or a dataset callable) executes in."""

    evaluation: str
    logical_date: datetime
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    run_id: int | None = None
    version: str | None = None
    run_type: str = "manual"
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None


class CallRecord:
    """One component call: its inputs by parameter name, output or error, and latency."""

    __slots__ = ("call_index", "component", "error", "inputs", "latency_ms", "output")

    def __init__(
        self,
        component: str,
        call_index: int,
        inputs: dict[str, Any],
        output: Any,
        error: str | None,
        latency_ms: float,
    ) -> None:
        self.component = component
        self.call_index = call_index
        self.inputs = inputs
        self.output = output
        self.error = error
        self.latency_ms = latency_ms

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            CallRecord,
            (
                self.component,
                self.call_index,
                self.inputs,
                self.output,
                self.error,
                self.latency_ms,
            ),
        )


class ExampleRecorder:
    """Collects the component calls made while one example runs."""

    __slots__ = ("calls", "components", "counters")

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.counters: dict[str, int] = {}
        self.components: dict[str, Any] = {}

    def next_index(self, component: Any) -> int:
        """Reserve the next call index of ``component`` (calls are numbered from 0)."""
        name = component.name
        known = self.components.get(name)
        if known is None:
            self.components[name] = component
        elif known is not component:
            from hypermetric.errors import DefinitionError

            raise DefinitionError(
                f"two different components are named {name!r}; "
                "give one a distinct name with @hm.component(name=...)"
            )
        index = self.counters.get(name, 0)
        self.counters[name] = index + 1
        return index


current_recorder: ContextVar[ExampleRecorder | None] = ContextVar(
    "hypermetric_recorder", default=None
)
