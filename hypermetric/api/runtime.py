"""``@hm.runtime``: the driver of an evaluation, run once per example of its dataset.

The decorated object keeps everything the scheduler stores about the evaluation (schedule,
limits, retries) and runs it with :meth:`Runtime.run`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hypermetric.api.component import importable, resolve_import
from hypermetric.api.context import RunContext
from hypermetric.api.evals import Eval, as_eval
from hypermetric.api.versions import version_info
from hypermetric.errors import DefinitionError, ScheduleError

if TYPE_CHECKING:
    from hypermetric.query.result import RunResult

__all__ = ["Runtime", "ScheduleSpec", "check_epochs", "rescore", "resume", "retry", "runtime"]


def _aware(value: datetime | date | str | None, tz: ZoneInfo, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ScheduleError(f"{what} {value!r} is not an ISO date or datetime") from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleSpec:
    """When and how the scheduler runs an evaluation."""

    schedule: str | None = None
    timezone: str = "UTC"
    catchup: bool = False
    start_date: datetime | None = None
    end_date: datetime | None = None
    max_active_runs: int = 1
    retries: int = 0
    retry_delay: float = 60.0
    retry_exponential: bool = True
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_active_runs < 1:
            raise DefinitionError("max_active_runs must be at least 1")
        if self.retries < 0 or self.retry_delay < 0:
            raise DefinitionError("retries and retry_delay must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise DefinitionError("timeout must be a positive number of seconds")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ScheduleError(
                f"end_date {self.end_date.isoformat()} is before start_date "
                f"{self.start_date.isoformat()}"
            )


class Runtime:
    """A decorated runtime: its function, dataset, version label, limits and schedule."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        dataset: Any = None,
        version: str | None = None,
        evals: Iterable[Any] = (),
        concurrency: int = 1,
        max_error_rate: float = 0.1,
        params: Mapping[str, Any] | None = None,
        description: str | None = None,
        schedule: ScheduleSpec | None = None,
        epochs: int = 1,
        example_fields: Iterable[str] | None = None,
        omit_fields: Iterable[str] = (),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError("@hm.runtime needs name='...': the evaluation's name")
        self.fn = fn
        self.name = name
        self.dataset = dataset
        self.version = version
        self.evals: tuple[Eval, ...] = tuple(as_eval(e) for e in evals)
        if not isinstance(concurrency, int) or concurrency < 1:
            raise DefinitionError(f"runtime {name!r}: concurrency must be an integer ≥ 1")
        if not 0.0 <= float(max_error_rate) <= 1.0:
            raise DefinitionError(f"runtime {name!r}: max_error_rate must be between 0 and 1")
        self.concurrency = concurrency
        self.epochs = check_epochs(epochs, f"runtime {name!r}: ")
        #: the example fields the run keeps in its ``examples`` rows (None: all but omitted)
        self.example_fields = _field_names(name, "example_fields", example_fields)
        self.omit_fields = _field_names(name, "omit_fields", omit_fields) or ()
        self.max_error_rate = float(max_error_rate)
        self.params: Mapping[str, Any] = MappingProxyType(dict(params or {}))
        self.description = description or inspect.getdoc(fn)
        self.schedule = schedule or ScheduleSpec()
        self.is_async = inspect.iscoroutinefunction(fn)
        self.takes_context = self._check_signature(fn)
        from hypermetric.api.binding import make_plan

        # the runtime's own call has no arguments: `example` binds the whole example
        self.plans = tuple(make_plan(name, (), e) for e in self.evals)
        self.__wrapped__ = fn
        self.__module__ = fn.__module__
        self.__qualname__ = fn.__qualname__
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def _check_signature(self, fn: Callable[..., Any]) -> bool:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            raise DefinitionError(f"runtime {self.name!r}: {fn!r} is not a function") from None
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [
            p
            for p in params
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        shape = ", ".join(p.name for p in params) or "nothing"
        ok = len(positional) >= 1 and len(required) <= 2
        if ok and len(required) == 2:
            ok = required[1].name == "context"
        if not ok:
            raise DefinitionError(
                f"runtime {self.name!r} must take (example) or (example, context); "
                f"it takes ({shape})"
            )
        return any(p.name == "context" for p in params)

    def __repr__(self) -> str:
        return f"<runtime {self.name} version={self.version!r}>"

    def __reduce__(self) -> Any:
        if importable(self):
            return (resolve_import, (self.__module__, self.__qualname__))
        return (_rebuild, (self.fn, self.__dict__.copy()))

    def __call__(self, example: Mapping[str, Any], context: RunContext | None = None) -> Any:
        """Run the function on one example, outside any run (nothing is recorded)."""
        if self.takes_context:
            ctx = context or RunContext(
                evaluation=self.name,
                logical_date=datetime.now(UTC),
                params=self.params,
                version=self.version,
            )
            return self.fn(example, context=ctx)
        return self.fn(example)

    @property
    def import_path(self) -> str | None:
        """``module:qualname`` when the scheduler can import this runtime again."""
        return f"{self.__module__}:{self.__qualname__}" if importable(self) else None

    def versions(self) -> dict[str, Any]:
        """Code hashes of the runtime, its components and evals, and each eval's direction."""
        return version_info(self)

    def run(
        self,
        *,
        version: str | None = None,
        params: Mapping[str, Any] | None = None,
        dataset: Any = None,
        ray_address: str | None = None,
        logical_date: datetime | None = None,
        progress: bool = False,
        cache: bool | None = None,
        epochs: int | None = None,
    ) -> RunResult:
        """Run the evaluation now, on Ray, and return its result once every score is stored.

        ``version`` overrides the label, ``params`` are merged over the runtime's, and
        ``ray_address`` (else ``RAY_ADDRESS``) names a cluster; without one a local Ray
        is started once per process. ``progress`` shows a progress bar on a terminal.
        ``cache=True`` caches every component's calls, ``False`` bypasses the call cache
        (default: the components declared with ``cache=True``). ``epochs`` overrides the
        runtime's ``epochs=`` for this run.
        Raises RunFailedError when the run fails (its row says why).
        """
        # The engine and query layers sit above the API; importing them here keeps
        # decoration free of Ray and DuckDB.
        from hypermetric.engine.pool import prewarm

        prewarm()  # a first run's actors boot while the run sets itself up
        from hypermetric.engine.progress import progress_display
        from hypermetric.engine.runner import run_runtime
        from hypermetric.query.result import RunResult

        with progress_display(progress, self.name) as on_progress:
            record = run_runtime(
                self,
                version=version,
                params=params,
                dataset=dataset,
                ray_address=ray_address,
                logical_date=logical_date,
                progress=on_progress,
                cache=cache,
                epochs=epochs,
            )
        return RunResult(record.id)


def rescore(
    run_id: int | str,
    *,
    version: str | None = None,
    runtime: Runtime | None = None,
    dataset: Any = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> RunResult:
    """Score run ``run_id``'s stored outputs again with the evals of the current code
    (``run_id``: an id, or ``"EVALUATION@VERSION"`` for that version's latest successful run).

    A new run of the same evaluation replays the stored component calls (their inputs and
    outputs) and scores them; no component runs, so no model is called. It records
    ``source_run_id``, and ``compare`` pairs its examples with the stored run's. ``version``
    labels it (default: the stored run's label); ``runtime`` is the current code (default:
    the evaluation's import path, imported again); ``dataset`` is needed only for runs that
    read an in-memory dataset. Raises RunFailedError when it fails.
    """
    from hypermetric.engine.progress import progress_display
    from hypermetric.engine.runner import rescore_run
    from hypermetric.query.compare import resolve_run
    from hypermetric.query.result import RunResult

    source = resolve_run(run_id).id
    with progress_display(progress, f"rescore of run {source}") as on_progress:
        record = rescore_run(
            source,
            version=version,
            runtime=runtime,
            dataset=dataset,
            ray_address=ray_address,
            progress=on_progress,
        )
    return RunResult(record.id)


def resume(
    run_id: int,
    *,
    ray_address: str | None = None,
    dataset: Any = None,
    force: bool = False,
    progress: bool = False,
) -> RunResult:
    """Continue a run whose driver died: only the units not committed run again.

    ``dataset`` is needed only for runs that read an in-memory dataset. ``force`` resumes
    even while another live process seems to drive the run.
    """
    from hypermetric.engine.progress import progress_display
    from hypermetric.engine.runner import resume_run
    from hypermetric.query.result import RunResult

    with progress_display(progress, f"run {run_id}") as on_progress:
        record = resume_run(
            run_id, ray_address=ray_address, dataset=dataset, force=force, progress=on_progress
        )
    return RunResult(record.id)


def retry(
    run_id: int,
    *,
    queue: bool = False,
    ray_address: str | None = None,
    dataset: Any = None,
    progress: bool = False,
) -> RunResult:
    """Run a failed (or canceled) run's failed work again, as a new attempt.

    Every example that had an error (a component call or an eval raised) is driven again,
    and its old rows leave the current dataset (reading an earlier version still shows
    them); every unit never committed runs; the other examples keep their scores. With
    ``queue`` the retry is queued for a scheduler instead of run here. ``dataset`` is needed
    only for runs that read an in-memory dataset. Raises RunFailedError if it fails again.
    """
    from hypermetric.catalog.attempts import queue_retry
    from hypermetric.catalog.db import database
    from hypermetric.engine.progress import progress_display
    from hypermetric.engine.runner import retry_run
    from hypermetric.query.result import RunResult

    if queue:
        return RunResult(queue_retry(database(), run_id).id)
    with progress_display(progress, f"run {run_id}") as on_progress:
        record = retry_run(run_id, ray_address=ray_address, dataset=dataset, progress=on_progress)
    return RunResult(record.id)


def check_epochs(epochs: Any, where: str = "") -> int:
    """``epochs`` if it is an integer ≥ 1, else DefinitionError (``where`` prefixes it)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise DefinitionError(
            f"{where}epochs must be an integer ≥ 1 (the times each example runs), not {epochs!r}"
        )
    return epochs


def _field_names(runtime: str, what: str, names: Iterable[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    found = () if isinstance(names, str) else tuple(names)
    if isinstance(names, str) or not all(isinstance(n, str) for n in found):
        raise DefinitionError(
            f"runtime {runtime!r}: {what} must be a list of field names, e.g. {what}=['topic']"
        )
    return found


def _rebuild(fn: Callable[..., Any], state: dict[str, Any]) -> Runtime:
    obj = Runtime.__new__(Runtime)
    obj.__dict__.update(state)
    return obj


def runtime(
    *,
    name: str | None = None,
    dataset: Any = None,
    version: str | None = None,
    evals: Iterable[Any] = (),
    concurrency: int = 1,
    max_error_rate: float = 0.1,
    params: Mapping[str, Any] | None = None,
    description: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: bool = False,
    start_date: datetime | date | str | None = None,
    end_date: datetime | date | str | None = None,
    max_active_runs: int = 1,
    retries: int = 0,
    retry_delay: float = 60.0,
    retry_exponential: bool = True,
    timeout: float | None = None,
    epochs: int = 1,
    example_fields: Iterable[str] | None = None,
    omit_fields: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Runtime]:
    """Declare a runtime: ``@hm.runtime(name="qa-nightly", dataset="qa.jsonl")``.

    The function takes one example (a dict) and optionally ``context`` (a RunContext with
    the logical date and params), calls components, and returns the final output (scored
    by ``evals`` here, if any). ``schedule`` is a cron expression (5 fields, or 6 with
    seconds first) read in ``timezone``; the other options are stored by
    ``hypermetric evals register`` and obeyed by the scheduler.

    ``epochs`` runs each example that many times (an ``epoch`` column, 0 to K - 1, in
    scores and calls; ``context.epoch`` tells the runtime which). Each run keeps its
    examples' fields in the ``examples`` dataset: ``example_fields`` keeps only those
    named, ``omit_fields`` leaves those named out (a value larger than the
    ``example_field_bytes`` setting is stored as null).
    """
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown timezone {timezone!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None
    spec = ScheduleSpec(
        schedule=schedule,
        timezone=timezone,
        catchup=catchup,
        start_date=_aware(start_date, tz, "start_date"),
        end_date=_aware(end_date, tz, "end_date"),
        max_active_runs=max_active_runs,
        retries=retries,
        retry_delay=float(retry_delay),
        retry_exponential=retry_exponential,
        timeout=timeout,
    )

    def wrap(f: Callable[..., Any]) -> Runtime:
        return Runtime(
            f,
            name=name or f.__name__,
            dataset=dataset,
            version=version,
            evals=evals,
            concurrency=concurrency,
            max_error_rate=max_error_rate,
            params=params,
            description=description,
            schedule=spec,
            epochs=epochs,
            example_fields=example_fields,
            omit_fields=omit_fields,
        )

    return wrap
