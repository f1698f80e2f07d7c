"""The Ray Jobs launcher: each run attempt is a job on a Ray cluster (``--launcher ray-jobs``).

With ``RAY_ADDRESS=http://HEAD:8265`` (the head's dashboard, where the Jobs API answers),
each launch submits a job whose entrypoint is ``python -m hypermetric runs resume RUN``: the
run's driver, its memory and its failure live on the cluster, not on the scheduler's host.

* **One job per attempt.** The submission id is made of the evaluation, the run and the
  attempt the job will start (``hypermetric-NAME-run12-attempt3``). A scheduler that died
  between submitting and recording finds the job under that id at its next launch and
  adopts it instead of submitting another (Ray refuses a second job with the same id, too).
  A job that ended without starting its attempt (the run is still queued at it) is deleted
  and submitted again under the same id.
* **Reconciled with the cluster.** The supervisor asks for the job of each running run it
  does not watch yet: a live one is adopted; one that ended without ending its run makes
  the run lost, resumed as when a local run process dies. Ray's job status is advisory (the
  head forgets its jobs when it restarts): the run's state in the metadata DB, fenced by
  its attempt, stays the truth, and a silent run is still found by its heartbeat.
* **Stopped.** A timeout or a cancel stops the job (``stop_job``); the run is failed only
  once the job has ended.

What travels with the job (the code, the settings, the token) and what is refused before
anything is submitted is :mod:`hypermetric.scheduler.shipping`'s.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from hypermetric.catalog.records import RunRecord
from hypermetric.config import Settings
from hypermetric.errors import SchedulerError
from hypermetric.masking import masked
from hypermetric.scheduler.launcher import LaunchDeferred, Launcher, RunHandle
from hypermetric.scheduler.shipping import (
    ClusterToken,
    check_reachable,
    cluster_token,
    job_env_vars,
    working_dir_env,
)

__all__ = ["RayJobHandle", "RayJobsLauncher", "submission_id"]

log = logging.getLogger("hypermetric.scheduler")

ENTRYPOINT = "python -m hypermetric runs resume {run_id} --no-progress"
_META_RUN, _META_ATTEMPT = "hypermetric_run", "hypermetric_attempt"
#: exit statuses a job's end stands for (its driver's own code when Ray knows it)
_STOPPED, _MISSING = -15, -1


def submission_id(evaluation: str, run_id: int, attempt: int) -> str:
    """The job id of attempt ``attempt`` of a run: the same whoever submits it."""
    slug = re.sub(r"[^a-z0-9]+", "-", evaluation.lower()).strip("-")[:40] or "eval"
    return f"hypermetric-{slug}-run{run_id}-attempt{attempt}"


class RayJobsLauncher(Launcher):
    """Submits run attempts to the Jobs API at ``settings.ray_address``.

    Refuses, before connecting, a DB or storage the cluster cannot reach and a working
    directory over the upload limit (unless ``check`` is false: a reader of logs); refuses a
    missing or wrong token once connected.
    """

    remote = True

    def __init__(self, settings: Settings, *, check: bool = True) -> None:
        address = (settings.ray_address or "").rstrip("/")
        if not address.startswith(("http://", "https://")):
            shown = f"RAY_ADDRESS={address}" if address else "no RAY_ADDRESS"
            raise SchedulerError(
                f"the ray-jobs launcher needs the Jobs API of the cluster, and {shown} is "
                "not it: set RAY_ADDRESS=http://HEAD:8265 (the head's dashboard address)"
            )
        if check:  # not to read logs
            check_reachable(settings)
        self.settings, self.address = settings, address
        self.token: ClusterToken | None = cluster_token()
        if check:
            working_dir_env(settings)  # a folder over the limit is refused now, not at launch
        self.client = self._connect()

    # -- the Jobs API ------------------------------------------------------------------

    def _hide(self, text: str) -> str:
        return masked(text, [self.token.value] if self.token else [])

    def _connect(self) -> Any:
        try:
            from ray.exceptions import AuthenticationError
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise SchedulerError(
                'the ray-jobs launcher needs Ray\'s job client: pip install "hypermetric[cluster]"'
            ) from None
        headers = {"Authorization": f"Bearer {self.token.value}"} if self.token else None
        try:
            client = JobSubmissionClient(self.address, headers=headers)
            client.list_jobs()  # a wrong token is refused here, not at the first launch
        except AuthenticationError as exc:
            raise SchedulerError(self._auth_problem(str(exc))) from None
        except Exception as exc:
            first = self._hide(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise SchedulerError(
                f"cannot reach the Ray Jobs API at {self.address} ({type(exc).__name__}: "
                f"{first}); start the head with the dashboard (pip install "
                '"hypermetric[cluster]") and set RAY_ADDRESS=http://HEAD:8265'
            ) from None
        return client

    def _auth_problem(self, message: str) -> str:
        if self.token is None or "required" in message.lower() or "missing" in message.lower():
            return (
                f"the Ray cluster at {self.address} requires its authentication token; set "
                "RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding it (`ray "
                "get-auth-token` on the head prints it)"
            )
        return (
            f"the Ray cluster at {self.address} refused the token read from "
            f"{self.token.source}; give the cluster's own (`ray get-auth-token` on the head "
            "prints it)"
        )

    def job_info(self, sid: str) -> Any | None:
        """The job's details, or None if the cluster has no such job; raises when the
        cluster cannot be asked (its answer is unknown, not "no job")."""
        try:
            return self.client.get_job_info(sid)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return None
            raise

    def stop(self, sid: str) -> None:
        """Ask the cluster to stop the job (its driver gets SIGTERM, then SIGKILL)."""
        try:
            if self.client.stop_job(sid):
                log.info("job %s: asked the cluster to stop it", sid)
        except Exception as exc:
            log.warning("job %s: stop_job failed: %s", sid, self._hide(str(exc)))

    def job_logs(self, sid: str) -> str:
        """What the job's driver printed (masked)."""
        return self._hide(self.client.get_job_logs(sid))

    # -- launching ---------------------------------------------------------------------

    def _runtime_env(self) -> dict[str, Any]:
        env = working_dir_env(self.settings)
        env["env_vars"] = job_env_vars(self.settings, self.token)
        return env

    def launch(self, run: RunRecord, ray_address: str | None) -> RunHandle:
        """Submit the job of ``run``'s next attempt, or adopt the one already submitted."""
        attempt = run.attempt + 1
        sid = submission_id(run.evaluation, run.id, attempt)
        handle = RayJobHandle(self, run.id, sid, attempt)
        try:
            info = self.job_info(sid)
        except Exception as exc:  # the cluster does not answer now: not the run's fault
            raise LaunchDeferred(self._hide(f"the Ray Jobs API at {self.address}: {exc}")) from None
        if info is not None and not info.status.is_terminal():
            log.info("run %d: job %s was submitted already; adopting it", run.id, sid)
            return handle
        if info is not None:
            # it ended before starting its attempt (the run is still queued at it)
            self.client.delete_job(sid)
        try:
            self.client.submit_job(
                entrypoint=ENTRYPOINT.format(run_id=run.id),
                submission_id=sid,
                runtime_env=self._runtime_env(),
                metadata={_META_RUN: str(run.id), _META_ATTEMPT: str(attempt)},
            )
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                said = lines[-1] if lines else type(exc).__name__  # Ray's text ends with why
                raise SchedulerError(self._hide(f"job {sid} was not submitted: {said}")) from None
            log.info("run %d: job %s was submitted meanwhile; adopting it", run.id, sid)
        else:
            log.info("run %d: submitted job %s", run.id, sid)
        return handle

    def adopt(
        self,
        run_id: int,
        pid: int | None,
        *,
        created_before: datetime | None = None,
        evaluation: str = "",
        attempt: int = 0,
    ) -> RunHandle | None:
        """The job of attempt ``attempt`` of the run, live or ended; None if the cluster
        has none (or cannot be asked now)."""
        sid = submission_id(evaluation, run_id, attempt)
        try:
            found = self.job_info(sid)
        except Exception as exc:
            log.warning("run %d: cannot ask the cluster for job %s: %s", run_id, sid, exc)
            return None
        return None if found is None else RayJobHandle(self, run_id, sid, attempt)

    def logs(self, run: RunRecord) -> list[tuple[str, str]]:
        """Each job of the run, oldest attempt first, with what its driver printed."""
        jobs = [
            j
            for j in self.client.list_jobs()
            if (j.metadata or {}).get(_META_RUN) == str(run.id) and j.submission_id
        ]
        jobs.sort(key=lambda j: int((j.metadata or {}).get(_META_ATTEMPT, 0)))
        return [(f"job {j.submission_id} ({j.status.value})", self.job_logs(j.submission_id))
                for j in jobs]  # fmt: skip


class RayJobHandle(RunHandle):
    """The job that drives one attempt of a run; its state is asked of the cluster."""

    def __init__(self, launcher: RayJobsLauncher, run_id: int, sid: str, attempt: int) -> None:
        super().__init__(run_id, None)
        self.launcher, self.submission_id, self.attempt = launcher, sid, attempt
        self._code: int | None = None

    def poll(self) -> int | None:
        """The job's end as an exit status: its driver's code, -15 stopped, -1 forgotten by
        the cluster; None while it is pending or running, or when the cluster cannot say."""
        if self._code is not None:
            return self._code
        try:
            info = self.launcher.job_info(self.submission_id)
        except Exception as exc:
            log.warning("job %s: cannot ask the cluster: %s", self.submission_id, exc)
            return None
        if info is None:
            self._code = _MISSING
        elif info.status.is_terminal():
            status = str(info.status.value)
            default = {"SUCCEEDED": 0, "STOPPED": _STOPPED}.get(status, 1)
            code = info.driver_exit_code
            self._code = default if code is None or status == "STOPPED" else int(code)
        return self._code

    def kill(self) -> None:
        """Stop the job; :meth:`stopped` tells when it has ended."""
        if self.poll() is None:
            self.launcher.stop(self.submission_id)

    @property
    def name(self) -> str:
        """``job SUBMISSION_ID``."""
        return f"job {self.submission_id}"

    def drives(self, run: RunRecord) -> bool:
        """True if the run is running at this job's attempt."""
        return run.state == "running" and run.attempt == self.attempt

    def last_words(self) -> str:
        """The last line the job's driver printed."""
        try:
            text = self.launcher.job_logs(self.submission_id)
        except Exception:
            return ""
        return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
