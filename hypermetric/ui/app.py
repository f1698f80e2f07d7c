"""The web view's routes: server-rendered pages, their JSON under ``/api``, and the writes.

Pages: ``/`` (the grid), ``/evaluations/{name}``, ``/runs/{id}``, ``/compare?a=&b=`` and
``/sql?q=``; each has its data as JSON under ``/api`` with the same parameters. Writes are
``POST /api/evaluations/{name}/{trigger|backfill|pause|unpause}`` and need the token
(:mod:`hypermetric.ui.writes`). Bad input answers 400 with one line saying what was wrong
and what to do; an unknown run or evaluation 404. Every response says how long the server
took (``Server-Timing: app;dur=MS``) and forbids framing, sniffing and inline scripts.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hypermetric.catalog.db import database
from hypermetric.catalog.evaluations import get_evaluation
from hypermetric.catalog.records import RUN_STATES
from hypermetric.config import Settings, get_settings
from hypermetric.errors import ConflictError, HypermetricError, NotFoundError
from hypermetric.masking import masked
from hypermetric.query.render import fmt_interval, fmt_num, fmt_p
from hypermetric.ui.cache import RunStats
from hypermetric.ui.charts import charts_for
from hypermetric.ui.comparison import compare_view
from hypermetric.ui.console import run_sql, stream_rows
from hypermetric.ui.evaluation import evaluation_history
from hypermetric.ui.grid import build_grid
from hypermetric.ui.jsonable import fmt_time, jsonable
from hypermetric.ui.runs import run_view
from hypermetric.ui.writes import ACTIONS, check_token, do_write

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
]


class _Timing:
    """Adds ``Server-Timing: app;dur=MS`` (time to the response's first byte) and the
    security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000.0
                headers = [*message.get("headers", []), *_SECURITY_HEADERS]
                headers.append((b"server-timing", f"app;dur={took:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)


class BadInput(ValueError):
    """A query parameter or body that cannot be read: one line, answered with 400."""


def _param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = _param(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInput(
            f"{name} must be a whole number from {low} to {high}, not {text!r}"
        ) from None
    if not low <= value <= high:
        raise BadInput(f"{name} must be a whole number from {low} to {high}, not {value}")
    return value


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    return 400


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(num=fmt_num, interval=fmt_interval, pvalue=fmt_p, time=fmt_time)
    env.globals["RUN_STATES"] = RUN_STATES
    return env


class _Views:
    """The route handlers, bound to one server's settings, token and caches."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        self.settings = settings
        self.token = token
        self.stats = RunStats(settings)
        self.env = _environment()

    # -- helpers -----------------------------------------------------------------------

    def page(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        body = self.env.get_template(name).render(writable=bool(self.token), **context)
        return HTMLResponse(body, status_code=code)

    def guarded_page(self, request: Request, build: Callable[[], HTMLResponse]) -> Response:
        try:
            return build()
        except (HypermetricError, ValueError) as exc:
            code = _status(exc)
            message = masked(str(exc))
            return self.page("error.html", code, status=code, message=message, request=request)

    def guarded_json(self, build: Callable[[], Any]) -> Response:
        try:
            return JSONResponse(jsonable(build()))
        except (HypermetricError, ValueError) as exc:
            return JSONResponse({"error": masked(str(exc))}, status_code=_status(exc))

    # -- the grid ----------------------------------------------------------------------

    def _grid(self, request: Request) -> Any:
        state = _param(request, "state")
        if state is not None and state not in RUN_STATES:
            raise BadInput(f"state must be one of {', '.join(RUN_STATES)}, not {state!r}")
        evaluation = _param(request, "evaluation")
        if evaluation is not None:
            get_evaluation(database(self.settings), evaluation)
        return build_grid(
            self.settings,
            self.stats,
            evaluation=evaluation,
            state=state,
            version=_param(request, "version"),
            metric=_param(request, "metric"),
            columns=_int(request, "columns", 20, 1, 200),
        )

    def grid_page(self, request: Request) -> Response:
        return self.guarded_page(
            request, lambda: self.page("grid.html", grid=self._grid(request), request=request)
        )

    def grid_partial(self, request: Request) -> Response:
        return self.guarded_page(
            request, lambda: self.page("_grid.html", grid=self._grid(request), request=request)
        )

    def grid_api(self, request: Request) -> Response:
        return self.guarded_json(lambda: self._grid(request))

    # -- an evaluation's history -------------------------------------------------------

    def _history(self, request: Request) -> tuple[Any, list[Any]]:
        return evaluation_history(
            self.settings,
            self.stats,
            request.path_params["name"],
            metric=_param(request, "metric"),
            window=_int(request, "window", 7, 1, 1000),
        )

    def evaluation_page(self, request: Request) -> Response:
        def build() -> HTMLResponse:
            evaluation, points = self._history(request)
            return self.page(
                "evaluation.html",
                evaluation=evaluation,
                charts=charts_for(points),
                metric=_param(request, "metric") or "",
                request=request,
            )

        return self.guarded_page(request, build)

    def evaluation_api(self, request: Request) -> Response:
        def build() -> dict[str, Any]:
            evaluation, points = self._history(request)
            return {"evaluation": evaluation, "points": points}

        return self.guarded_json(build)

    # -- a run -------------------------------------------------------------------------

    def _run(self, request: Request) -> Any:
        return run_view(
            self.settings,
            int(request.path_params["run_id"]),
            page=_int(request, "page", 1, 1, 10_000_000),
            per_page=_int(request, "per_page", 20, 1, 500),
            errors_only=_param(request, "errors") in ("1", "true", "yes"),
        )

    def run_page(self, request: Request) -> Response:
        return self.guarded_page(
            request, lambda: self.page("run.html", view=self._run(request), request=request)
        )

    def run_api(self, request: Request) -> Response:
        return self.guarded_json(lambda: self._run(request))

    # -- compare -----------------------------------------------------------------------

    def _compare(self, request: Request) -> Any:
        a, b = _param(request, "a"), _param(request, "b")
        if a is None or b is None:
            raise BadInput("name both runs: ?a=RUN&b=RUN, each an id or EVALUATION@VERSION")
        return compare_view(
            self.settings,
            a,
            b,
            metric=_param(request, "metric"),
            limit=_int(request, "limit", 20, 1, 500),
        )

    def compare_page(self, request: Request) -> Response:
        def build() -> HTMLResponse:
            if _param(request, "a") is None and _param(request, "b") is None:
                return self.page("compare.html", view=None, request=request)
            return self.page("compare.html", view=self._compare(request), request=request)

        return self.guarded_page(request, build)

    def compare_api(self, request: Request) -> Response:
        return self.guarded_json(lambda: self._compare(request))

    # -- SQL ---------------------------------------------------------------------------

    def sql_page(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        result, error = None, None
        if query.strip():
            try:
                result = run_sql(self.settings, query, _int(request, "max_rows", 500, 1, 10_000))
            except (HypermetricError, ValueError) as exc:
                error = masked(str(exc))
        status = 400 if error else 200
        return self.page("sql.html", status, query=query, result=result, error=error)

    def sql_api(self, request: Request) -> Response:
        return self.guarded_json(
            lambda: run_sql(
                self.settings,
                request.query_params.get("q", ""),
                _int(request, "max_rows", 500, 1, 10_000),
            )
        )

    def sql_csv(self, request: Request) -> Response:
        try:
            chunks = stream_rows(self.settings, request.query_params.get("q", ""), "csv")
        except (HypermetricError, ValueError) as exc:
            return JSONResponse({"error": masked(str(exc))}, status_code=_status(exc))
        headers = {"content-disposition": 'attachment; filename="hypermetric-query.csv"'}
        return StreamingResponse(chunks, media_type="text/csv", headers=headers)

    # -- writes ------------------------------------------------------------------------

    async def write(self, request: Request) -> Response:
        refused = check_token(self.token, request.headers.get("authorization"))
        if refused is not None:
            return JSONResponse({"error": refused.message}, status_code=refused.status)
        action, name = request.path_params["action"], request.path_params["name"]
        if action not in ACTIONS:
            return JSONResponse(
                {"error": f"unknown write {action!r}; one of {', '.join(ACTIONS)}"},
                status_code=404,
            )
        try:
            raw = await request.body()
            body = {} if not raw.strip() else await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            done = await run_in_threadpool(do_write, self.settings, action, name, body)
        except (HypermetricError, ValueError) as exc:
            return JSONResponse({"error": masked(str(exc))}, status_code=_status(exc))
        return JSONResponse(jsonable(done))


def create_app(
    settings: Settings | None = None,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    warm: bool = False,
) -> Starlette:
    """The web view over ``settings``' metadata DB and shards.

    ``token`` enables writes (see :mod:`hypermetric.ui.writes`); ``allowed_hosts`` refuses
    requests whose ``Host`` header is not one of them (a page bound to 127.0.0.1 then
    cannot be read through a rebound DNS name); None allows any. ``warm`` reads every
    finished run's stats in a background thread at start, so the first grid and history
    pages find them read.
    """
    views = _Views(settings or get_settings(), token)
    routes = [
        Route("/", views.grid_page),
        Route("/partials/grid", views.grid_partial),
        Route("/evaluations/{name}", views.evaluation_page),
        Route("/runs/{run_id:int}", views.run_page),
        Route("/compare", views.compare_page),
        Route("/sql", views.sql_page),
        Route("/api/grid", views.grid_api),
        Route("/api/evaluations/{name}", views.evaluation_api),
        Route("/api/runs/{run_id:int}", views.run_api),
        Route("/api/compare", views.compare_api),
        Route("/api/sql", views.sql_api),
        Route("/api/sql.csv", views.sql_csv),
        Route("/api/evaluations/{name}/{action}", views.write, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(_Timing)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if warm:
            threading.Thread(
                target=views.stats.warm, name="hypermetric-ui-warm", daemon=True
            ).start()
        yield

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
