"""Calls to model APIs without Ray: the pacer of a rate limit, retry delays, and guarded
calls (retries, attempts, the call cache) as a driver records them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyarrow.fs import LocalFileSystem

import hypermetric as hm
from hypermetric.api.calls import LocalLimiter, cache_key, storable
from hypermetric.api.context import RunContext
from hypermetric.api.datasets import iter_chunks
from hypermetric.api.limits import HORIZON, MAX_HOLD, Pacer
from hypermetric.catalog.types import utcnow
from hypermetric.engine.scoring import complete_calls
from hypermetric.engine.worker import drive_unit
from hypermetric.errors import DefinitionError
from hypermetric.storage.cache import StoreCache
from hypermetric.storage.files import ShardStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pacer_spaces_permits_evenly_and_never_leases_past_its_horizon() -> None:
    clock = Clock()
    pacer = Pacer(hm.RateLimit("p", per_second=40), clock=clock)
    delay, interval, n = pacer.reserve(100)
    assert (delay, interval) == (0.0, 0.025) and n == round(HORIZON / interval) + 1
    delay, _, n = pacer.reserve(100)
    assert n == 0 and delay > 0  # nothing more until time passes
    given = 0
    for _ in range(200):  # ten simulated seconds of greedy callers
        clock.now += 0.05
        given += pacer.reserve(100)[2]
    assert 40 * 10 - 5 <= given <= 40 * 10 + 5


def test_the_stricter_of_per_second_and_per_minute_wins() -> None:
    assert hm.RateLimit("a", per_second=5, per_minute=120).rate == 2.0
    assert hm.RateLimit("a", per_minute=600).rate == 10.0
    assert hm.RateLimit("a", concurrency=3).rate is None


def test_a_429_cuts_the_rate_once_per_overload_and_it_recovers_gradually() -> None:
    clock = Clock()
    pacer = Pacer(hm.RateLimit("p", per_second=100), clock=clock)
    for _ in range(8):  # the calls in flight all answer 429
        pacer.limited(None)
    assert pacer.rate == 50.0
    clock.now += 0.3
    pacer.limited(retry_after=2.0)
    assert pacer.rate == 25.0
    delay, _, granted = pacer.reserve(1)  # everyone paused for retry_after
    assert granted == 0 and 2.0 - HORIZON < delay < 2.0
    rates = []
    for _ in range(20):
        clock.now += 1.0
        pacer.reserve(1)
        rates.append(pacer.rate)
    assert rates == sorted(rates) and rates[0] == pytest.approx(27.5) and rates[-1] == 100.0


def test_an_unbounded_limit_backs_off_from_what_it_was_granting() -> None:
    clock = Clock()
    pacer = Pacer(hm.RateLimit("p", concurrency=4), clock=clock)
    for _ in range(30):
        clock.now += 0.02
        assert pacer.reserve(1)[2] == 1
    pacer.limited(None)
    assert pacer.rate == pytest.approx(15.0)  # half of the 30 granted in the last second
    assert pacer.slots == 2.0


def test_concurrency_slots_are_a_bound_on_calls_in_flight() -> None:
    clock = Clock()
    pacer = Pacer(hm.RateLimit("p", concurrency=2), clock=clock)
    assert [pacer.take_slots(1) for _ in range(3)] == [1, 1, 0]
    pacer.give_slots(1)
    assert pacer.take_slots(1) == 1 and pacer.take_slots(1) == 0
    clock.now += MAX_HOLD + 1  # their holders died mid-call: the slots come back
    assert pacer.take_slots(2) == 2 and pacer.in_flight == 2


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    retry = hm.Retry(backoff=0.5, max_backoff=3.0, random=lambda: 1.0)
    assert [retry.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    low = hm.Retry(backoff=0.5, random=lambda: 0.0)
    assert low.delay(2) == 0.5  # jitter takes up to half off
    assert low.delay(1, retry_after=4.0) == 4.0  # never sooner than the API asked
    assert retry.retries(hm.Transient()) and retry.retries(TimeoutError())
    assert not retry.retries(ValueError())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: hm.RateLimit(""), "needs a name"),
        (lambda: hm.RateLimit("a", per_second=0), "per_second must be a positive number"),
        (lambda: hm.RateLimit("a", concurrency=0), "concurrency must be an integer"),
        (lambda: hm.Retry(on=(int,)), "takes exception types"),
        (lambda: hm.Retry(attempts=0), r"attempts=\.\.\.\) must be an integer"),
        (lambda: hm.component(lambda x: x, rate_limit=5), "rate_limit takes hm.RateLimit"),  # type: ignore[arg-type]
        (lambda: hm.component(lambda x: x, retry=3), "retry takes hm.Retry"),  # type: ignore[arg-type]
    ],
)
def test_bad_definitions_say_what_to_write(make: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


def test_a_local_limiter_paces_calls_in_this_process() -> None:
    import time

    limiter = LocalLimiter(hm.RateLimit("local", per_second=50))
    start = time.monotonic()
    for _ in range(26):
        limiter.acquire()
        limiter.release()
    assert time.monotonic() - start == pytest.approx(0.5, abs=0.15)


# -- guarded calls as a driver records them ------------------------------------------------

CALLS: dict[str, int] = {}


def _flaky(prompt: str) -> str:
    """Fails with Transient on the first call of each prompt starting with 'f'."""
    CALLS[prompt] = CALLS.get(prompt, 0) + 1
    if prompt.startswith("f") and CALLS[prompt] == 1:
        raise hm.Transient("503")
    if prompt.startswith("x"):
        raise TimeoutError("always")
    return prompt.upper()


retried = hm.component(_flaky, name="retried", retry=hm.Retry(attempts=3, backoff=0.0))
plain = hm.component(_flaky, name="plain")
cached = hm.component(lambda prompt: prompt.upper(), name="cached", cache=True)
tupled = hm.component(lambda prompt: (prompt,), name="tupled", cache=True)


def _runtime(component: Any) -> hm.Runtime:
    return hm.runtime(name=f"rt-{component.name}")(lambda example: component(example["prompt"]))


def _calls(component: Any, prompts: list[str], services: Any = None) -> dict[str, list[Any]]:
    rows = [{"id": i, "prompt": p} for i, p in enumerate(prompts)]
    chunk = next(iter_chunks(rows, len(rows)))
    context = RunContext(evaluation="t", logical_date=utcnow())
    scored = drive_unit(_runtime(component), chunk, 0, context, services=services)
    calls = complete_calls(scored.calls).to_pydict()
    keep = [i for i, c in enumerate(calls["component"]) if c == component.name]
    return {k: [v[i] for i in keep] for k, v in calls.items()}


def test_a_retried_call_records_its_attempts_and_only_exhausted_retries_are_errors() -> None:
    CALLS.clear()
    calls = _calls(retried, ["ok", "flaky", "xdead"])
    assert calls["attempts"] == [1, 2, 3]
    assert calls["error"] == [None, None, "TimeoutError: always"]
    assert calls["output"] == ['"OK"', '"FLAKY"', None]
    assert calls["cached"] == [False, False, False]


def test_transient_is_retried_without_a_retry_policy_and_other_errors_are_not() -> None:
    CALLS.clear()
    calls = _calls(plain, ["ok", "flaky", "xdead"])
    assert calls["attempts"] == [1, 2, 1]
    assert calls["error"] == [None, None, "TimeoutError: always"]


@dataclass
class Services:
    cache: StoreCache
    params: Mapping[str, Any] = field(default_factory=dict)
    cache_mode: bool | None = None

    def limiter(self, limit: hm.RateLimit) -> LocalLimiter:
        return LocalLimiter(limit)


def _store(path: Path) -> ShardStore:
    return ShardStore(uri=str(path), fs=LocalFileSystem(), root=str(path))


def test_a_cache_hit_is_not_called_and_is_marked_cached(tmp_path: Path) -> None:
    services = Services(StoreCache(_store(tmp_path)))
    first = _calls(cached, ["a", "b"], services)
    assert (first["cached"], first["attempts"]) == ([False, False], [1, 1])
    again = _calls(cached, ["a", "b", "c"], services)
    assert again["cached"] == [True, True, False] and again["attempts"] == [0, 0, 1]
    assert again["output"] == first["output"] + ['"C"']
    bypass = _calls(cached, ["a"], Services(services.cache, cache_mode=False))
    assert bypass["cached"] == [False]
    other = _calls(cached, ["a"], Services(services.cache, params={"temperature": 1}))
    assert other["cached"] == [False]  # another param: another key
    assert StoreCache(_store(tmp_path)).clear("cached") == 4
    assert _calls(cached, ["a"], services)["cached"] == [False]


def test_run_level_cache_covers_every_component(tmp_path: Path) -> None:
    CALLS.clear()
    services = Services(StoreCache(_store(tmp_path)), cache_mode=True)
    _calls(plain, ["ok"], services)
    assert _calls(plain, ["ok"], services)["cached"] == [True]
    assert CALLS == {"ok": 1}


def test_outputs_that_do_not_read_back_from_json_are_not_cached_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = Services(StoreCache(_store(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="hypermetric"):
        _calls(tupled, ["a", "b"], services)
        again = _calls(tupled, ["a"], services)
    assert again["cached"] == [False]
    said = [r.getMessage() for r in caplog.records if "tupled" in r.getMessage()]
    assert len(said) == 1 and "not cached" in said[0]
    assert storable((1,)) is None and storable({1: 2}) is None and storable([1, "a"]) == '[1,"a"]'


def test_the_key_changes_with_code_arguments_and_params() -> None:
    base = cache_key("h1", {"prompt": "a"}, {"t": 0})
    assert base == cache_key("h1", {"prompt": "a"}, {"t": 0})
    assert base != cache_key("h2", {"prompt": "a"}, {"t": 0})
    assert base != cache_key("h1", {"prompt": "b"}, {"t": 0})
    assert base != cache_key("h1", {"prompt": "a"}, {"t": 1})
    assert cache_key("h1", {"prompt": object()}, {}) is None


def test_components_without_policies_stay_plain() -> None:
    assert not plain.guarded and retried.guarded and cached.guarded
    assert hm.component(lambda x: x, rate_limit=hm.RateLimit("n", per_second=1)).guarded
