"""One guarded component call: look in the call cache, wait for the rate limit, call, retry
what is worth retrying, store the output. Pure Python (no Ray): the engine hands in
:class:`CallServices` that share limits across the cluster and a cache in the store; without
them (a unit driven in a test) limits are this process's and nothing is cached.

A component with none of ``rate_limit``, ``retry`` or ``cache`` never comes here unless it
raised :class:`~hypermetric.api.limits.Transient` (then the default :class:`Retry` applies),
so plain components pay nothing for any of this.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hypermetric.api.limits import Pacer, RateLimit, RateLimited, Retry

if TYPE_CHECKING:
    from hypermetric.api.component import Component
    from hypermetric.api.context import CallRecorder

__all__ = [
    "DEFAULT_RETRY",
    "MISS",
    "CallCache",
    "CallServices",
    "Limiter",
    "LocalLimiter",
    "cache_key",
    "call_async",
    "call_sync",
    "storable",
]

log = logging.getLogger("hypermetric")

DEFAULT_RETRY = Retry()
_MISS = object()
_warned: set[tuple[str, str]] = set()


def say_once(component: str, what: str) -> None:
    """Log a warning about a component once per process."""
    if (component, what) not in _warned:
        _warned.add((component, what))
        log.warning("component %r: %s", component, what)


class Limiter(Protocol):
    """A rate limit's budget as one process sees it."""

    def acquire(self) -> None:
        """Wait for a permit (and a slot of concurrency)."""

    async def acquire_async(self) -> None:
        """Wait for a permit without blocking the event loop."""

    def release(self) -> None:
        """The call holding a slot is done."""

    def limited(self, retry_after: float | None) -> None:
        """The API answered 429: slow everyone down."""


class CallCache(Protocol):
    """Outputs of earlier calls, by key."""

    def get(self, component: str, key: str) -> Any:
        """The stored output, or :data:`MISS`."""

    def put(self, component: str, key: str, text: str) -> None:
        """Store an output's JSON text."""


class CallServices(Protocol):
    """What a run lends the calls it drives."""

    #: True: cache every component's calls; False: none; None: those with cache=True
    cache_mode: bool | None
    cache: CallCache | None
    params: Mapping[str, Any]

    def limiter(self, limit: RateLimit) -> Limiter:
        """The budget of ``limit``'s name."""


MISS = _MISS


class LocalLimiter:
    """A rate limit kept by this process alone (outside a run, or in unit tests)."""

    def __init__(self, limit: RateLimit) -> None:
        self.pacer = Pacer(limit)
        self.lock = threading.Lock()

    def _permit(self) -> float:
        with self.lock:
            delay, _, granted = self.pacer.reserve(1)
            if granted and self.pacer.take_slots(1):
                return -max(delay, 0.0) - 1.0  # negative: granted, wait -x-1 seconds
            if granted:  # no slot: hand the permit back by not using it
                return 0.005
            return max(delay, 0.001)

    def acquire(self) -> None:
        """Wait for a permit and a slot."""
        while (wait := self._permit()) >= 0:
            time.sleep(wait)
        time.sleep(-wait - 1.0)

    async def acquire_async(self) -> None:
        """Wait for a permit and a slot, on the event loop."""
        while (wait := self._permit()) >= 0:
            await asyncio.sleep(wait)
        await asyncio.sleep(-wait - 1.0)

    def release(self) -> None:
        """Give the slot back."""
        with self.lock:
            self.pacer.give_slots(1)

    def limited(self, retry_after: float | None) -> None:
        """Back off."""
        with self.lock:
            self.pacer.limited(retry_after)


_local: dict[str, LocalLimiter] = {}


def _limiter(services: CallServices | None, limit: RateLimit) -> Limiter:
    if services is not None:
        return services.limiter(limit)
    found = _local.get(limit.name)
    if found is None:
        found = _local[limit.name] = LocalLimiter(limit)
    return found


def cache_key(
    code_hash: str, inputs: Mapping[str, Any], params: Mapping[str, Any], epoch: int = 0
) -> str | None:
    """The key of a call: the component's code hash, its arguments, the run's params and
    the example's epoch (None when the arguments or params are not JSON).

    The epoch is part of the key because epochs exist to draw K different samples of the
    same call: epoch 1 served epoch 0's cached output would make every epoch the same.
    Epoch 0 keys as calls did before epochs existed, so a cache filled then still serves."""
    key: list[Any] = [code_hash, inputs, params]
    if epoch:
        key.append(epoch)
    try:
        text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def storable(value: Any) -> str | None:
    """The JSON text of an output that reads back equal to itself (None otherwise: a
    tuple, a dict with int keys, an object)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    try:
        same = bool(json.loads(text) == value)
    except Exception:
        same = False
    return text if same else None


class _Call:
    """The bookkeeping of one guarded call, shared by the sync and async paths: the cache,
    the limiter, the attempts made, and the record of how the call ended."""

    def __init__(
        self,
        component: Component,
        recorder: CallRecorder,
        index: int,
        inputs: dict[str, Any],
        failed: BaseException | None,
    ) -> None:
        self.component, self.recorder, self.index, self.inputs = component, recorder, index, inputs
        self.services: CallServices | None = recorder.services
        self.retry = component.retry or DEFAULT_RETRY
        self.limit = component.rate_limit
        self.limiter = _limiter(self.services, self.limit) if self.limit else None
        #: the last attempt's error (the first attempt may have been made already)
        self.failed = failed
        self.attempt = 0 if failed is None else 1
        self.elapsed = 0.0
        self.key: str | None = None
        self.cache: CallCache | None = None
        services = self.services
        mode = services.cache_mode if services else None
        wanted = mode or (mode is None and component.cache)
        if services is not None and services.cache is not None and wanted and failed is None:
            self.cache = services.cache
            self.key = cache_key(component.code_hash, inputs, services.params, recorder.epoch)
            if self.key is None:
                say_once(
                    component.name,
                    "its arguments or the run's params are not JSON; its calls are not cached",
                )

    def _record(self, output: Any, error: str | None, cached: bool = False) -> None:
        self.recorder.add(self.component.name, self.index, self.inputs, output, error, self.elapsed)
        self.recorder.mark(self.attempt, cached)

    def cached(self) -> Any:
        """The output the cache holds for this call (recorded as the call), or MISS."""
        if self.cache is None or self.key is None:
            return MISS
        hit = self.cache.get(self.component.name, self.key)
        if hit is not MISS:
            self._record(hit, None, cached=True)
        return hit

    def wait(self) -> float:
        """Seconds to wait before the next attempt (0 for the first); raises the last error
        (recorded) when there is to be no other."""
        exc = self.failed
        if exc is None:
            return 0.0
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        if isinstance(exc, RateLimited) and self.limiter is not None:
            self.limiter.limited(retry_after)
        if self.attempt >= self.retry.attempts or not self.retry.retries(exc):
            self._record(None, _error(exc))
            raise exc
        return self.retry.delay(self.attempt, retry_after)

    def begin(self) -> float:
        """An attempt starts (after its permit): its start time."""
        self.attempt += 1
        return time.perf_counter()

    def raised(self, exc: BaseException, start: float) -> None:
        """The attempt raised ``exc``."""
        self.failed, self.elapsed = exc, (time.perf_counter() - start) * 1e3
        if self.limiter is not None:
            self.limiter.release()

    def returned(self, output: Any, start: float) -> Any:
        """The attempt returned ``output``: store it in the cache and record the call."""
        self.elapsed = (time.perf_counter() - start) * 1e3
        if self.limiter is not None:
            self.limiter.release()
        self._store(output)
        self._record(output, None)
        return output

    def _store(self, output: Any) -> None:
        if self.cache is None or self.key is None:
            return
        text = storable(output)
        if text is None:
            say_once(
                self.component.name,
                f"its output ({type(output).__name__}) does not "
                "read back from JSON as it was; such calls are not cached",
            )
            return
        self.cache.put(self.component.name, self.key, text)


def _error(exc: BaseException) -> str:
    from hypermetric.api.component import describe_error

    return describe_error(exc)


def call_sync(
    component: Component,
    recorder: CallRecorder,
    index: int,
    inputs: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    failed: BaseException | None = None,
) -> Any:
    """Make a guarded call (``failed``: the first attempt, made already, raised this)."""
    from hypermetric.api.component import CAUGHT

    call = _Call(component, recorder, index, inputs, failed)
    hit = call.cached()
    if hit is not MISS:
        return hit
    while True:
        time.sleep(call.wait())
        if call.limiter is not None:
            call.limiter.acquire()
        start = call.begin()
        try:
            output = component.fn(*args, **kwargs)
        except CAUGHT as exc:
            call.raised(exc, start)
            continue
        return call.returned(output, start)


async def call_async(
    component: Component,
    recorder: CallRecorder,
    index: int,
    inputs: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    failed: BaseException | None = None,
) -> Any:
    """:func:`call_sync` for an ``async def`` component."""
    from hypermetric.api.component import CAUGHT

    call = _Call(component, recorder, index, inputs, failed)
    hit = call.cached()
    if hit is not MISS:
        return hit
    while True:
        await asyncio.sleep(call.wait())
        if call.limiter is not None:
            await call.limiter.acquire_async()
        start = call.begin()
        try:
            output = await component.fn(*args, **kwargs)
        except CAUGHT as exc:
            call.raised(exc, start)
            continue
        return call.returned(output, start)
