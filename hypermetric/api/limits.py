"""Calls to model APIs: rate limits shared by name, retries per call, and the two exceptions
user code raises to ask for them.

::

    hm.RateLimit("openai", per_second=40, concurrency=16)   # one budget per name, cluster-wide
    hm.Retry(on=(TimeoutError,), attempts=5, backoff=0.5, max_backoff=30)
    hm.RateLimited(retry_after=2.0)    # raise on a 429: everyone backs off, the call is retried
    hm.Transient("503")                # raise for "retry me"

:class:`Pacer` is the budget itself, pure Python with an injected clock: the engine keeps one
per name in a Ray actor that every driver leases permits from; outside a run a process keeps
its own.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hypermetric.errors import DefinitionError

__all__ = ["Pacer", "RateLimit", "RateLimited", "Retry", "Transient"]


class Transient(Exception):
    """Raised by a component for "this call failed for a passing reason: retry it"."""


class RateLimited(Transient):
    """Raised by a component when the API said "too many requests" (an HTTP 429).

    Every caller sharing the component's rate limit slows down, and the call is retried
    after ``retry_after`` seconds (the API's ``Retry-After``) or an exponential backoff.
    """

    def __init__(self, message: str = "rate limited", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _positive(value: float | None, what: str, limit: str) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise DefinitionError(f"RateLimit({limit!r}): {what} must be a positive number")


@dataclass(frozen=True)
class RateLimit:
    """A budget of calls shared by every component, run and node that names it.

    ``per_second`` and ``per_minute`` bound the rate of calls (both may be given: the
    stricter wins; calls are spread evenly, so no second ever holds more than its share);
    ``concurrency`` bounds the calls in flight at once across the cluster.
    """

    name: str
    per_second: float | None = None
    per_minute: float | None = None
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError("hm.RateLimit needs a name: hm.RateLimit('openai', ...)")
        _positive(self.per_second, "per_second", self.name)
        _positive(self.per_minute, "per_minute", self.name)
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise DefinitionError(f"RateLimit({self.name!r}): concurrency must be an integer ≥ 1")

    @property
    def rate(self) -> float | None:
        """Calls per second allowed (None: no bound on the rate)."""
        rates = [r for r in (self.per_second, (self.per_minute or 0) / 60 or None) if r]
        return min(rates) if rates else None


@dataclass(frozen=True)
class Retry:
    """How a call that raised is tried again: up to ``attempts`` executions in all, waiting
    ``backoff * 2**(n-1)`` seconds (at most ``max_backoff``, with jitter) before the n-th
    retry. Exceptions of the types ``on`` are retried, and always :class:`Transient` and
    :class:`RateLimited`; anything else is an error row at once."""

    on: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        on = (self.on,) if isinstance(self.on, type) else tuple(self.on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise DefinitionError("hm.Retry(on=...) takes exception types, e.g. (TimeoutError,)")
        object.__setattr__(self, "on", on)
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise DefinitionError("hm.Retry(attempts=...) must be an integer ≥ 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise DefinitionError("hm.Retry backoff and max_backoff must not be negative")

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt."""
        return isinstance(exc, (Transient, *self.on))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 1)."""
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        if self.jitter:
            delay *= 0.5 + self.random() / 2
        return max(delay, retry_after or 0.0)


#: after a 429 the rate is multiplied by this, then grows back by _RECOVERY of itself every
#: second without one, up to the limit (a limit set far above what the API allows settles
#: near what it allows instead of overshooting it again at once)
_DECREASE = 0.5
_RECOVERY = 0.1
#: the slowest a backed-off limit goes (calls per second)
_FLOOR = 0.2
#: 429s within this many seconds of a cut are one overload: the rate is cut once for them
_SETTLE = 0.2
#: seconds after which a slot of concurrency not given back is taken back (its holder died)
MAX_HOLD = 600.0
#: how far ahead a caller may hold permits, and how late it may use one: a permit is used
#: within HORIZON of its time, so no window of w seconds holds more than
#: ``rate * (w + HORIZON) + 1`` calls; it also bounds how long a limit that just backed off
#: keeps being used at the old rate
HORIZON = 0.05


class Pacer:
    """The budget of one rate limit: permits spaced evenly at the current rate, and slots
    of concurrency, both cut back after a 429 and recovering gradually.

    ``reserve(n)`` hands out permits as times: the caller may call at ``start``,
    ``start + interval``, ... and no permit lies further ahead than :data:`HORIZON`, so a
    caller that asks again gets its turn among the others.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.limit = limit
        self.rate: float | None = limit.rate
        self.slots: float | None = float(limit.concurrency) if limit.concurrency else None
        self.next_free = clock()
        self.paused_until = 0.0
        self.calm_since = clock()
        self.cut_at = -math.inf
        self.granted: deque[tuple[float, int]] = deque()  # (time, permits) of the last second
        self.held: deque[float] = deque()  # when each slot in use was taken, oldest first

    @property
    def in_flight(self) -> int:
        """Slots of concurrency in use."""
        return len(self.held)

    def configure(self, limit: RateLimit) -> None:
        """Adopt new numbers for the same name (the latest definition wins)."""
        if limit != self.limit:
            self.limit, self.rate = limit, limit.rate
            self.slots = float(limit.concurrency) if limit.concurrency else None

    def _recover(self, now: float) -> None:
        calm = now - self.calm_since
        if calm < 1.0:
            return
        steps = math.floor(calm)
        self.calm_since += steps
        target = self.limit.rate
        if self.rate is not None and (target is None or self.rate < target):
            grown = max(self.rate * (1 + _RECOVERY) ** steps, self.rate + _FLOOR)
            if target is None and grown > 2 * max(self._observed(now), _FLOOR):
                self.rate = None  # faster than anyone asks: unbounded again
            else:
                self.rate = grown if target is None else min(target, grown)
        cap = self.limit.concurrency
        if self.slots is not None and cap is not None and self.slots < cap:
            self.slots = min(float(cap), self.slots + steps)

    def _observed(self, now: float) -> float:
        while self.granted and self.granted[0][0] < now - 1.0:
            self.granted.popleft()
        return float(sum(n for _, n in self.granted))

    def reserve(self, n: int) -> tuple[float, float, int]:
        """Up to ``n`` permits: (seconds from now to the first, seconds between them,
        how many). None granted means: ask again after the first number of seconds."""
        now = self.clock()
        self._recover(now)
        start = max(now, self.next_free, self.paused_until)
        if self.rate is None:
            granted = n
            interval = 0.0
        else:
            interval = 1.0 / self.rate
            room = now + HORIZON - start
            granted = min(n, math.floor(room / interval + 1e-9) + 1) if room >= 0 else 0
            if granted == 0:
                return start - now - HORIZON + interval, interval, 0
            self.next_free = start + granted * interval
        self.granted.append((now, granted))
        return start - now, interval, granted

    def limited(self, retry_after: float | None = None) -> None:
        """A caller met a 429: slow everyone down, and pause them for ``retry_after``."""
        now = self.clock()
        if now - self.cut_at >= _SETTLE:  # the calls in flight at a cut answer 429 too
            self.cut_at = now
            base = self.rate if self.rate is not None else max(self._observed(now), 1.0)
            self.rate = max(_FLOOR, base * _DECREASE)
            if self.slots is not None:
                self.slots = max(1.0, math.floor(self.slots * _DECREASE))
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)
        self.next_free = max(self.next_free, now + 1.0 / (self.rate or 1.0))
        self.calm_since = now

    def take_slots(self, n: int) -> int:
        """Up to ``n`` slots of concurrency (0 when all are in use). A slot held longer than
        :data:`MAX_HOLD` is taken back: its holder died during its call (a process killed
        mid-call never gives its slot back, and the budget would shrink for good)."""
        now = self.clock()
        self._recover(now)
        while self.held and self.held[0] < now - MAX_HOLD:
            self.held.popleft()
        granted = n if self.slots is None else max(0, min(n, int(self.slots) - len(self.held)))
        self.held.extend([now] * granted)
        return granted

    def give_slots(self, n: int) -> None:
        """Slots back, their calls done (the oldest holds are the ones that end first)."""
        for _ in range(min(n, len(self.held))):
            self.held.popleft()
