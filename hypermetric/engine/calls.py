"""What a run lends the component calls it drives: rate limits shared across the cluster, and
the call cache in the run's store (:class:`RunServices`, the engine's
:class:`~hypermetric.api.calls.CallServices`).

A rate limit is one detached, named Ray actor per limit name (in the ``hypermetric``
namespace), so every driver of every run on the cluster that names it shares one
:class:`~hypermetric.api.limits.Pacer`. A process does not ask it once per call: it leases
permits in batches that reach at most :data:`~hypermetric.api.limits.HORIZON` seconds ahead
(about 20 leases a second per busy process whatever the rate), which keeps the budget exact to
within one batch and lets thousands of permits a second through. Slots of ``concurrency``
are taken and given back per call.

A limit's actor that nothing asked for :data:`IDLE_EXIT` seconds, with no slot held (a slot
held past ``MAX_HOLD`` lost its process), stops itself, so a cluster that stays up for
months does not keep a process for every limit name it ever saw; the next call starts it
again (a fresh budget, which an idle limit has anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError

from hypermetric.api.limits import HORIZON, MAX_HOLD, Pacer, RateLimit
from hypermetric.storage.cache import StoreCache
from hypermetric.storage.files import ShardStore

__all__ = ["ClusterLimiter", "LimiterActor", "RunServices", "cluster_limiter"]

NAMESPACE = "hypermetric"
#: permits asked for at once when the rate is unbounded (they expire after HORIZON)
_UNBOUNDED_BATCH = 256
#: how long a request for a slot of concurrency waits in the actor before it is asked again
_SLOT_WAIT = 0.5
#: seconds without a request after which a limit's actor with no slot held stops itself
IDLE_EXIT = 600.0
#: times a call finds the limit's actor stopped and starts it again before it gives up
_RESTARTS = 3


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class LimiterActor:
    """One rate limit's budget for the whole cluster (an async actor: one event loop, so
    its pacer needs no lock)."""

    def __init__(
        self, limit: RateLimit, idle_exit: float = IDLE_EXIT, max_hold: float = MAX_HOLD
    ) -> None:
        self.pacer = Pacer(limit)
        self.freed: asyncio.Event | None = None
        self.idle_exit, self.max_hold = idle_exit, max_hold
        self.asked = time.monotonic()
        self.watch: asyncio.Task[None] | None = None

    def _asked(self) -> None:
        """A request came: the idle clock starts again (and the watch, at the first)."""
        self.asked = time.monotonic()
        if self.watch is None:
            self.watch = asyncio.get_running_loop().create_task(self._stop_when_idle())

    async def _stop_when_idle(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.idle_exit / 4))
            now = time.monotonic()
            held = self.pacer.held  # oldest first; one past MAX_HOLD lost its process
            busy = bool(held) and held[-1] >= now - self.max_hold
            if now - self.asked >= self.idle_exit and not busy:
                # killed as asked, so not restarted: the next caller starts a new one
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    async def reserve(self, limit: RateLimit, n: int) -> tuple[float, float, int]:
        """Lease up to ``n`` permits (see :meth:`Pacer.reserve`)."""
        self._asked()
        self.pacer.configure(limit)
        return self.pacer.reserve(n)

    async def limited(self, retry_after: float | None) -> None:
        """A caller met a 429."""
        self._asked()
        self.pacer.limited(retry_after)

    async def state(self) -> tuple[float | None, float | None]:
        """The current rate and slots of concurrency (after backing off, below the limit's)."""
        return self.pacer.rate, self.pacer.slots

    async def take_slot(self, limit: RateLimit) -> bool:
        """One slot of concurrency, waiting a little for one to free."""
        self._asked()
        self.pacer.configure(limit)
        deadline = time.monotonic() + _SLOT_WAIT
        while not self.pacer.take_slots(1):
            if self.freed is None:
                self.freed = asyncio.Event()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.freed.wait(), min(left, 0.05))
        return True

    async def give_slot(self) -> None:
        """A slot back."""
        self._asked()
        self.pacer.give_slots(1)
        if self.freed is not None:
            self.freed.set()
            self.freed = None


def _actor(limit: RateLimit) -> Any:
    return LimiterActor.options(  # type: ignore[attr-defined]
        name=f"limit:{limit.name}",
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
    ).remote(limit, IDLE_EXIT, MAX_HOLD)


class ClusterLimiter:
    """This process's side of a shared rate limit: leased permits, handed out in order."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.actor = _actor(limit)
        self.lock = threading.Lock()
        self.refill_lock = threading.Lock()
        self.permits: deque[float] = deque()  # monotonic times at which a call may go
        self.pending: asyncio.Future[None] | None = None
        self.id = uuid.uuid4().hex

    def _batch(self) -> int:
        rate = self.limit.rate
        return _UNBOUNDED_BATCH if rate is None else max(1, math.ceil(rate * HORIZON))

    def _take(self) -> float | None:
        """The time of the next leased permit (permits gone stale are dropped: using them
        late would bunch calls up)."""
        now = time.monotonic()
        with self.lock:
            while self.permits:
                at = self.permits.popleft()
                if at >= now - HORIZON:
                    return at
        return None

    def _add(self, received: float, lease: tuple[float, float, int]) -> None:
        delay, interval, n = lease
        start = received + delay
        with self.lock:
            self.permits.extend(start + i * interval for i in range(n))

    def _ask(self, method: str, *args: Any) -> Any:
        """Call ``method`` of the limit's actor, started again if it stopped itself."""
        for _ in range(_RESTARTS):
            try:
                return ray.get(getattr(self.actor, method).remote(*args))
            except RayActorError:
                self.actor = _actor(self.limit)
        return ray.get(getattr(self.actor, method).remote(*args))

    async def _ask_async(self, method: str, *args: Any) -> Any:
        """:meth:`_ask` on an event loop."""
        for _ in range(_RESTARTS):
            try:
                return await getattr(self.actor, method).remote(*args)
            except RayActorError:
                self.actor = _actor(self.limit)
        return await getattr(self.actor, method).remote(*args)

    def _lease(self) -> tuple[float, float, int]:
        return self._ask("reserve", self.limit, self._batch())

    def acquire(self) -> None:
        """Wait for a slot (with ``concurrency``) and a permit."""
        if self.limit.concurrency:
            while not self._ask("take_slot", self.limit):
                pass
        while (at := self._take()) is None:
            with self.refill_lock:
                if self.permits:
                    continue
                sent = time.monotonic()
                lease = self._lease()
                if lease[2] == 0:
                    time.sleep(lease[0])
                else:
                    self._add(sent, lease)
        wait = at - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    async def acquire_async(self) -> None:
        """:meth:`acquire` on an event loop: one lease at a time, the others wait for it."""
        if self.limit.concurrency:
            while not await self._ask_async("take_slot", self.limit):
                pass
        while (at := self._take()) is None:
            await self._refill_async()
        wait = at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _refill_async(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self.pending
        if pending is not None and pending.get_loop() is loop and not pending.done():
            await asyncio.shield(pending)
            return
        done: asyncio.Future[None] = loop.create_future()
        self.pending = done
        try:
            while True:
                sent = time.monotonic()
                lease = await self._ask_async("reserve", self.limit, self._batch())
                if lease[2]:
                    self._add(sent, lease)
                    return
                await asyncio.sleep(lease[0])
        finally:
            done.set_result(None)

    def release(self) -> None:
        """Give the slot of concurrency back (nothing to do without one)."""
        if self.limit.concurrency:
            self.actor.give_slot.remote()

    def limited(self, retry_after: float | None) -> None:
        """Tell everyone to back off, and drop this process's leased permits."""
        with self.lock:
            self.permits.clear()
        self.actor.limited.remote(retry_after)


_limiters: dict[str, ClusterLimiter] = {}
_limiters_lock = threading.Lock()


def cluster_limiter(limit: RateLimit) -> ClusterLimiter:
    """This process's client of ``limit``'s budget (one per name; new numbers for the same
    name reach the actor with the next lease)."""
    with _limiters_lock:
        found = _limiters.get(limit.name)
        if found is None:
            found = _limiters[limit.name] = ClusterLimiter(limit)
        elif found.limit != limit:
            found.limit = limit
        return found


@dataclass
class RunServices:
    """The services of one run's calls: travels to the drivers with each unit."""

    #: True: cache every component's calls; False: none; None: those with cache=True
    cache_mode: bool | None
    params: Mapping[str, Any]
    store: ShardStore | None = None
    cache: StoreCache | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.store is not None and self.cache_mode is not False:
            self.cache = StoreCache(self.store)

    def limiter(self, limit: RateLimit) -> ClusterLimiter:
        """The cluster-wide budget of ``limit``'s name."""
        return cluster_limiter(limit)
