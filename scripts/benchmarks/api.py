"""Model APIs: the rate a shared limit achieves against a fake API, and a cached rerun.

The fake API (``tests/engine/fake_api.py``, on 127.0.0.1) answers every request after
``--delay`` (20 ms) and allows more than any limit asked for, so the limit is the only
bound: the achieved rate of requests answered is printed against the configured one
(target >= 95%). Before that, an evaluation with ``cache=True`` runs twice on the same
prompts: the first calls the API for every example with no limit (what this machine can
send at all: a limit above it measures the machine, not the limiter), the second serves
every call from the cache (it must send no request); their examples/s are printed side by
side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delay", type=float, default=0.02, help="API response time (s)")
    parser.add_argument("--limits", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per limit measured")
    parser.add_argument("--cached-examples", type=int, default=4000)


def _prompts(n: int, tag: str) -> list[dict[str, object]]:
    return [{"id": i, "prompt": f"{tag}{i}"} for i in range(n)]


def _rates(args: argparse.Namespace, api: object, workloads: object) -> None:
    from tests.engine.fake_api import FakeAPI

    assert isinstance(api, FakeAPI)
    print(f"rate limit against an API of {args.delay * 1000:.0f} ms that allows more:")
    for limit in args.limits:
        api.times.clear()
        api.answered.clear()
        n = int(limit * args.seconds)
        params = {"url": api.url, "limit": f"bench-{uuid.uuid4().hex[:6]}", "per_second": limit}
        start = time.perf_counter()
        workloads.limited.run(dataset=_prompts(n, f"r{limit}-"), params=params)  # type: ignore[attr-defined]
        took = time.perf_counter() - start
        rate = api.rate(api.answered)
        print(
            f"  limit {limit:,.0f}/s: {n:,} requests, achieved {rate:,.1f}/s = "
            f"{rate / limit:.1%} of the limit (target >= 95%); busiest second "
            f"{api.busiest_second():,}; run {took:.1f}s"
        )


def _cache(args: argparse.Namespace, api: object, workloads: object) -> None:
    from tests.engine.fake_api import FakeAPI

    assert isinstance(api, FakeAPI)
    n = args.cached_examples
    data, params = _prompts(n, "c"), {"url": api.url}
    figures = []
    for label in ("uncached", "cached rerun"):
        before = api.requests
        start = time.perf_counter()
        result = workloads.cached.run(dataset=data, params=params)  # type: ignore[attr-defined]
        took = time.perf_counter() - start
        figures.append(result.run.examples_done / took)
        print(
            f"  {label}: {n:,} examples in {took:.2f}s = {figures[-1]:,.0f} examples/s, "
            f"{api.requests - before:,} requests sent"
        )
    print(f"  cached rerun / uncached: {figures[1] / figures[0]:.1f}x")


def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="hm-bench-api-"))
    os.environ["HYPERMETRIC_HOME"] = str(work / "home")
    from hypermetric.config import reset_settings
    from hypermetric.engine.cluster import connect

    reset_settings()
    from benchmarks import api_workloads
    from tests.engine.fake_api import FakeAPI, serve

    try:
        connect(None)
        with serve(FakeAPI(delay=args.delay)) as api:
            # warm pools: a driver per CPU starts here, not in the first measured run
            api_workloads.limited.run(
                dataset=_prompts(400, "warm"),
                params={"url": api.url, "limit": "bench-warm", "per_second": 1000.0},
            )
            print(f"call cache, async component of {args.delay * 1000:.0f} ms, concurrency 64:")
            _cache(args, api, api_workloads)
            _rates(args, api, api_workloads)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    return 0
