"""Systems under test that call a model API over HTTP (the fake one of
:mod:`tests.engine.fake_api`); importable by Ray workers as tests.engine.api_sample.

The API's URL and the rate limit's numbers come from the run's params, so one test can
point them at its own server and limit name.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import hypermetric as hm


def ask(url: str, prompt: str) -> str:
    """One request: 429 is RateLimited, 5xx Transient."""
    try:
        with urllib.request.urlopen(f"{url}?prompt={quote(prompt)}", timeout=30) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            after = exc.headers.get("Retry-After")
            raise hm.RateLimited(retry_after=float(after) if after else None) from None
        if exc.code >= 500:
            raise hm.Transient(f"HTTP {exc.code}") from None
        raise


def correct(output: str, prompt: str) -> float:
    return float(output == f"answer:{prompt}")


def length_v1(output: str) -> float:
    return float(len(output))


def length_v2(output: str) -> float:
    """The fixed eval a rescore applies: the answer's length without its prefix."""
    return float(len(output) - len("answer:"))


LIMITS: dict[str, hm.RateLimit] = {}
RETRY = hm.Retry(attempts=10, backoff=0.05, max_backoff=1.0)


class Limited:
    """A component whose rate limit comes from the run's params (one per test)."""

    def __init__(self, is_async: bool) -> None:
        self.is_async = is_async
        self.components: dict[tuple[str, float | None, int | None], Any] = {}

    def component(self, name: str, per_second: float | None, concurrency: int | None) -> Any:
        key = (name, per_second, concurrency)
        if key not in self.components:
            limit = hm.RateLimit(name, per_second=per_second, concurrency=concurrency)
            if self.is_async:

                async def generate(prompt: str, url: str) -> str:
                    return await asyncio.to_thread(ask, url, prompt)
            else:

                def generate(prompt: str, url: str) -> str:
                    return ask(url, prompt)

            self.components[key] = hm.component(
                generate, name="generate", evals=[correct], rate_limit=limit, retry=RETRY
            )
        return self.components[key]


_async_limited = Limited(is_async=True)
_sync_limited = Limited(is_async=False)


@hm.runtime(name="api-limited", concurrency=8)
async def limited(example: dict, context: hm.RunContext) -> str:
    p = context.params
    generate = _async_limited.component(p["limit"], p.get("per_second"), p.get("concurrency"))
    return str(await generate(example["prompt"], p["url"]))


@hm.runtime(name="api-limited-sync")
def limited_sync(example: dict, context: hm.RunContext) -> str:
    p = context.params
    generate = _sync_limited.component(p["limit"], p.get("per_second"), p.get("concurrency"))
    return str(generate(example["prompt"], p["url"]))


@hm.runtime(name="api-limited-sync-2")
def limited_sync_2(example: dict, context: hm.RunContext) -> str:
    """Another evaluation that shares the same limit by name."""
    return limited_sync(example, context)


@hm.component(name="cached", evals=[correct], cache=True)
def cached_v1(prompt: str, url: str) -> str:
    return ask(url, prompt)


@hm.component(name="cached", evals=[correct], cache=True)
def cached_v2(prompt: str, url: str) -> str:
    answer = ask(url, prompt)  # the same answer, other code: another cache key
    return answer


@hm.runtime(name="api-cached")
def cached(example: dict, context: hm.RunContext) -> str:
    return str(cached_v1(example["prompt"], context.params["url"]))


@hm.runtime(name="api-cached")
def cached_other_code(example: dict, context: hm.RunContext) -> str:
    return str(cached_v2(example["prompt"], context.params["url"]))


@hm.component(name="answer", evals=[hm.bind(length_v1, name="length"), correct])
def answer_v1(prompt: str, url: str) -> str:
    return ask(url, prompt)


@hm.component(name="answer", evals=[hm.bind(length_v2, name="length"), correct])
def answer_v2(prompt: str, url: str) -> str:
    return ask(url, prompt)


@hm.runtime(name="api-rescore")
def scored(example: dict, context: hm.RunContext) -> str:
    return str(answer_v1(example["prompt"], context.params["url"]))


@hm.runtime(name="api-rescore")
def scored_fixed(example: dict, context: hm.RunContext) -> str:
    """The same system with a fixed eval: what a rescore scores with."""
    return str(answer_v2(example["prompt"], context.params["url"]))


def prompts(n: int) -> list[dict[str, Any]]:
    """A dataset of ``n`` prompts with ids."""
    return [{"id": i, "prompt": f"p{i}"} for i in range(n)]
