"""The driver side of a run: the driver actors, the units queued on each, and the units to
drive again because their driver died.

A driver runs its queue in order and returns two refs per unit: an empty status, whose
arrival says the unit was driven (or how its driver failed) without fetching anything,
and the scored unit, which goes from the object store straight to an evaluator.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

from hypermetric.api.context import RunContext
from hypermetric.engine.cluster import worker_paths
from hypermetric.engine.pool import Lent, pool
from hypermetric.errors import EngineError, HypermetricError

__all__ = ["ACTOR_GONE", "Drivers", "Unit", "task_error"]

#: units queued on one driver actor: one running, one waiting, so it never idles while
#: the coordinator hands out the next
_DRIVER_QUEUE = 2
#: a unit whose driving kills its worker process this many times fails the run
_MAX_DRIVER_DEATHS = 4
#: an actor that died, or could not be started on its node (the node died first)
ACTOR_GONE = (RayActorError, ActorUnschedulableError)


@dataclass(frozen=True)
class Unit:
    """A unit on its way: its examples in the object store (to drive it again if its scored
    rows are lost), their size, and once driven, the scored rows in the object store."""

    unit_id: int
    chunk: Any  # the ref of the pickled chunk: the coordinator itself holds no examples
    size: int
    payload: Any = None

    def undriven(self) -> Unit:
        """The unit to drive again (its payload is gone with its driver or its node)."""
        return Unit(self.unit_id, self.chunk, self.size)


@dataclass
class _Driver:
    """One driver actor and the units queued on it (status ref -> unit)."""

    lent: Lent
    #: the ref of its bind: the reason a unit found it unbound, when the bind failed
    bound: Any = None
    queued: dict[Any, Unit] = field(default_factory=dict)


def task_error(run_id: int, exc: RayTaskError) -> Exception:
    """The error a run fails with when a task raised: ours as it was, any other in one line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, HypermetricError):
        return cause
    return EngineError(f"run {run_id}: {str(exc).strip().splitlines()[-1]}")


def _bind_error(driver: _Driver) -> RayTaskError | None:
    """Why ``driver`` could not bind to its attempt (user code it could not import), which
    every unit sent to it then fails on, if it could not."""
    try:
        ray.get(driver.bound)
    except RayTaskError as failed:
        return failed
    except ACTOR_GONE:
        return None  # it died since: the unit's own error says what it knows
    return None


class Drivers:
    """The driver actors of one run attempt."""

    def __init__(
        self,
        run_id: int,
        runtime: Any,
        context: RunContext,
        concurrency: int,
        services: Any = None,
        fields: Any = None,
    ) -> None:
        self.run_id = run_id
        self._runtime, self._context, self._concurrency = runtime, context, concurrency
        self._services, self._fields = services, fields
        # names this attempt's scorer in the warm actors: a run id alone is not unique (a
        # process may open several catalogs, whose ids overlap)
        self._key = uuid.uuid4().hex
        self._drivers: list[_Driver] = []
        self.driving: dict[Any, _Driver] = {}  # status ref -> its driver
        self.again: deque[Unit] = deque()  # units to drive again (their driver died)
        self._deaths: dict[int, int] = {}  # unit id -> drivers it killed

    def start(self, lents: list[Lent]) -> None:
        """Drive with these actors (taken from the pool)."""
        self._drivers = [self._bind(lent) for lent in lents]

    def _bind(self, lent: Lent) -> _Driver:
        paths = tuple(worker_paths())
        if paths != lent.paths:
            # a warm actor started before this process put a folder on its import path (a
            # notebook's sys.path.append): it adds them before the runtime unpickles
            lent.actor.add_paths.remote(list(paths))
            lent = replace(lent, paths=paths)
        # no wait: the actor binds before it runs any unit sent after this
        bound = lent.actor.bind.remote(
            self._key,
            self._runtime,
            self._context,
            self._concurrency,
            self._services,
            self._fields,
        )
        return _Driver(lent, bound)

    @property
    def lents(self) -> list[Lent]:
        return [driver.lent for driver in self._drivers]

    def room(self) -> bool:
        """Whether some driver can queue another unit."""
        return any(len(driver.queued) < _DRIVER_QUEUE for driver in self._drivers)

    def drive(self, unit: Unit) -> None:
        """Queue a unit on the least busy driver (call only when there is :meth:`room`)."""
        driver = min(self._drivers, key=lambda d: len(d.queued))
        status, payload = driver.lent.actor.drive.remote(self._key, unit.chunk, unit.unit_id)
        driver.queued[status] = Unit(unit.unit_id, unit.chunk, unit.size, payload)
        self.driving[status] = driver

    def driven(self, status: Any) -> Unit | None:
        """The unit whose status arrived, driven; None if its driver died (its units are
        queued to drive again) or it was a dead driver's unit. Raises the run's error if
        the driving raised one."""
        driver = self.driving.pop(status, None)
        if driver is None:
            return None  # a dead driver's unit, queued to drive again already
        try:
            ray.get(status)
        except ACTOR_GONE:
            self._replace(driver)
            return None
        except RayTaskError as exc:
            # its payload holds the same error: read it, or Ray reports it unhandled later
            with contextlib.suppress(RayTaskError):
                ray.get(driver.queued[status].payload)
            raise task_error(self.run_id, _bind_error(driver) or exc) from None
        return driver.queued.pop(status)

    def _replace(self, dead: _Driver) -> None:
        """A driver died: start another and drive every unit queued on it again."""
        self._drivers[self._drivers.index(dead)] = self._bind(pool.replace("driver", dead.lent))
        units = list(dead.queued.values())
        if units:  # an actor runs its units in order: the first was running when it died
            first = units[0].unit_id
            deaths = self._deaths[first] = self._deaths.get(first, 0) + 1
            if deaths >= _MAX_DRIVER_DEATHS:
                raise EngineError(
                    f"run {self.run_id}: unit {first} killed its worker process {deaths} "
                    "times; look for code that exits or crashes the interpreter on one of "
                    "its examples"
                )
        for status in dead.queued:
            self.driving.pop(status, None)
        self.again.extend(unit.undriven() for unit in units)
