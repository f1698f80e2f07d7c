"""What a runtime sees of its run, and the per-example recorder of component calls."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

__all__ = ["CallRecorder", "RunContext", "current_recorder"]


@dataclass(frozen=True)
class RunContext:
    """The run a runtime (or a dataset callable) executes in.

    ``epochs`` is how many times the run drives each example (``@hm.runtime(epochs=K)``)
    and ``epoch`` which of those times this is (0 to epochs - 1): a component that samples
    can seed its randomness on ``(example id, context.epoch)`` so that each epoch draws
    differently and a rerun draws the same."""

    evaluation: str
    logical_date: datetime
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    run_id: int | None = None
    version: str | None = None
    run_type: str = "manual"
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    epochs: int = 1
    epoch: int = 0


class CallRecorder:
    """Records component calls column by column, each with the position of its example.

    The driver keeps one for a whole work unit (``start`` moves it to the next example);
    concurrent examples each get their own and are merged afterwards.
    """

    __slots__ = (
        "_append",
        "call_component",
        "call_epoch",
        "call_error",
        "call_example",
        "call_index",
        "call_inputs",
        "call_latency",
        "call_output",
        "components",
        "counters",
        "epoch",
        "guard_all",
        "marks",
        "position",
        "services",
    )

    def __init__(self, services: Any = None, guard_all: bool = False) -> None:
        #: the run's :class:`~hypermetric.api.calls.CallServices` (None outside a run)
        self.services = services
        #: every component's calls are guarded (the run caches them all)
        self.guard_all = guard_all
        #: row -> (attempts, cached) of the guarded calls; other calls made one attempt
        self.marks: dict[int, tuple[int, bool]] = {}
        self.position = 0
        #: the epoch of the example being recorded (its calls are keyed and cached by it)
        self.epoch = 0
        self.counters: dict[str, int] = {}
        self.components: dict[str, Any] = {}
        self.call_example: list[int] = []
        self.call_component: list[str] = []
        self.call_index: list[int] = []
        self.call_inputs: list[dict[str, Any] | None] = []
        self.call_output: list[Any] = []
        self.call_error: list[str | None] = []
        self.call_latency: list[float] = []
        self.call_epoch: list[int] = []
        # the appends of every column, bound once: add() runs twice an example or more
        self._append = (
            self.call_example.append,
            self.call_component.append,
            self.call_index.append,
            self.call_inputs.append,
            self.call_output.append,
            self.call_error.append,
            self.call_latency.append,
            self.call_epoch.append,
        )

    def start(self, position: int, epoch: int = 0) -> None:
        """Record the next calls for the example at ``position`` in ``epoch`` (call indexes
        restart: each epoch of an example numbers its calls from 0)."""
        self.position = position
        self.epoch = epoch
        self.counters.clear()

    def next_index(self, component: Any) -> int:
        """Reserve the next call index of ``component`` in this example (from 0)."""
        name = component.name
        known = self.components.get(name)
        if known is component:  # the usual case: a component seen before
            index = self.counters.get(name, 0)
            self.counters[name] = index + 1
            return index
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

    def add(
        self,
        component: str,
        index: int,
        inputs: dict[str, Any] | None,
        output: Any,
        error: str | None,
        latency_ms: float,
    ) -> None:
        """Append one call of the current example."""
        example, name, number, given, out, err, latency, epoch = self._append
        example(self.position)
        name(component)
        number(index)
        given(inputs)
        out(output)
        err(error)
        latency(latency_ms)
        epoch(self.epoch)

    def mark(self, attempts: int, cached: bool) -> None:
        """Note how the call added last was made: its attempts, or served from the cache."""
        self.marks[len(self.call_component) - 1] = (attempts, cached)

    def merge(self, other: CallRecorder) -> None:
        """Append every call another recorder made (for its own example)."""
        if other.marks:
            offset = len(self.call_component)
            self.marks.update({row + offset: m for row, m in other.marks.items()})
        self.components.update(other.components)
        self.call_example.extend(other.call_example)
        self.call_component.extend(other.call_component)
        self.call_index.extend(other.call_index)
        self.call_inputs.extend(other.call_inputs)
        self.call_output.extend(other.call_output)
        self.call_error.extend(other.call_error)
        self.call_latency.extend(other.call_latency)
        self.call_epoch.extend(other.call_epoch)

    def __len__(self) -> int:
        return len(self.call_component)


current_recorder: ContextVar[CallRecorder | None] = ContextVar("hypermetric_recorder", default=None)
