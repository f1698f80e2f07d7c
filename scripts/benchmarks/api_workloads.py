"""The systems under test of the model-API benchmark (importable by Ray workers): async
components that send one HTTP GET each to the fake API over asyncio streams (a thread per
request would cap the calls in flight at the default executor's few threads)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlparse

import hypermetric as hm


async def get(url: str, prompt: str) -> str:
    """GET ``url?prompt=...``; 429 is RateLimited, 5xx Transient."""
    parts = urlparse(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(f"GET /?prompt={quote(prompt)} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    if code == 429:
        raise hm.RateLimited()
    if code >= 500:
        raise hm.Transient(f"HTTP {code}")
    return body.decode()


def correct(output: str, prompt: str) -> float:
    return float(output == f"answer:{prompt}")


_limited: dict[tuple[str, float], Any] = {}


def _limited_component(name: str, per_second: float) -> Any:
    key = (name, per_second)
    if key not in _limited:

        async def generate(prompt: str, url: str) -> str:
            return await get(url, prompt)

        _limited[key] = hm.component(
            generate,
            name="generate",
            evals=[correct],
            rate_limit=hm.RateLimit(name, per_second=per_second),
            retry=hm.Retry(attempts=10, backoff=0.05),
        )
    return _limited[key]


@hm.runtime(name="bench-api-limited", concurrency=64)
async def limited(example: dict, context: hm.RunContext) -> str:
    p = context.params
    generate = _limited_component(p["limit"], float(p["per_second"]))
    return str(await generate(example["prompt"], p["url"]))


@hm.component(name="generate", evals=[correct], cache=True)
async def cached_generate(prompt: str, url: str) -> str:
    return await get(url, prompt)


@hm.runtime(name="bench-api-cached", concurrency=64)
async def cached(example: dict, context: hm.RunContext) -> str:
    return str(await cached_generate(example["prompt"], context.params["url"]))
