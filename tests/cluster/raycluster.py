"""A real Ray cluster of two nodes on this machine, started with the README's commands.

The ``ray`` lines of the README's "In production" block run as written, with what one
machine needs to hold two nodes without touching anything else: the host is 127.0.0.1,
each node has one CPU, ports of its own and a ``--temp-dir`` of its own (two machines do
not share a folder; two nodes sharing one unpack a job's working directory into the same
place and pull it from under each other), and ``HOME`` is a folder of the test's, so the
token ``ray start --head`` makes is this cluster's alone. It is stopped by the process ids
it started (``ray stop`` would stop every Ray process of the machine): the processes whose
command line names its temporary directory, and everything below them.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["README", "RayCluster", "free_port", "production_block"]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
HEAD_HOST = "ray-head.internal"


def production_block() -> str:
    """The first bash block of the README's "In production" section."""
    text = README.read_text()
    section = text[text.index("## In production") :]
    found = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert found is not None, "README's In production section has no bash block"
    return found.group(1)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ports() -> list[str]:
    return [
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


@dataclass
class RayCluster:
    """A head and a worker node; :meth:`start`, then :meth:`stop`."""

    root: Path
    port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    token: str | None = None
    head_pids: set[int] = field(default_factory=set)
    worker_pids: set[int] = field(default_factory=set)
    #: the second node's temporary directory (a new one each time it is started again)
    worker_dir: str = "w"
    _worker_line: str = ""

    @property
    def gcs_address(self) -> str:
        """``HOST:PORT`` of the head (what ``RAY_ADDRESS`` names for a Ray driver)."""
        return f"127.0.0.1:{self.port}"

    @property
    def jobs_address(self) -> str:
        """The Jobs API (``RAY_ADDRESS=http://HEAD:8265`` for the ray-jobs launcher)."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def home(self) -> Path:
        """``HOME`` of the nodes: where ``ray start --head`` saves the cluster's token."""
        return self.root / "home"

    def env(self) -> dict[str, str]:
        """What the nodes start with: this interpreter's bin first on ``PATH`` (a job's
        entrypoint runs with the head's), a ``HOME`` of their own, no ``RAY_*`` of ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(self.home))
        if self.token:
            env["RAY_AUTH_TOKEN"] = self.token
        return env

    def _adapt(self, line: str) -> tuple[dict[str, str], list[str]]:
        """A README ``ray`` line for this machine: its leading ``VAR=value`` words, and the
        command with this cluster's host, ports, CPUs and temporary directory."""
        words = shlex.split(line.split("#")[0])
        assigned = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            name, _, value = words.pop(0).partition("=")
            assigned[name] = value
        out = []
        for word in words:
            word = word.replace(f"{HEAD_HOST}:6379", self.gcs_address)
            word = re.sub(r"^--port=\d+$", f"--port={self.port}", word)
            word = re.sub(r"^--num-cpus=\d+$", "--num-cpus=1", word)
            word = word.replace("--dashboard-host=0.0.0.0", "--dashboard-host=127.0.0.1")
            out.append(word)
        return assigned, out

    def start(self) -> None:
        """Run the README's ``ray`` lines; wait until the Jobs API sees both nodes."""
        self.home.mkdir(parents=True, exist_ok=True)
        ray_lines = [
            ln.strip()
            for ln in production_block().splitlines()
            if re.search(r"\bray (start|get-auth-token)\b", ln.split("#")[0])
        ]
        try:
            for line in ray_lines:
                assigned, command = self._adapt(line)
                if command[:3] == ["ray", "start", "--head"]:
                    extra = [f"--temp-dir={self.root / 'h'}"]
                    extra += [f"--dashboard-port={self.dashboard_port}", *_ports()]
                    self._run([*command, *extra], assigned, self.head_pids)
                elif command[:2] == ["ray", "start"]:
                    self._worker_line = line
                    self._start_worker()
                elif line.startswith("export RAY_AUTH_TOKEN=$(") and line.endswith(")"):
                    token_command = shlex.split(line[len("export RAY_AUTH_TOKEN=$(") : -1])
                    self.token = self._output(token_command).strip()
            assert self.head_pids and self.worker_pids, f"two ray start lines in {ray_lines}"
            self._wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise

    def _start_worker(self) -> None:
        assigned, command = self._adapt(self._worker_line)
        extra = [f"--temp-dir={self.root / self.worker_dir}", *_ports()]
        self._run([*command, *extra], assigned, self.worker_pids)

    def restart_worker(self) -> None:
        """Kill what is left of the second node and start it again, in a new folder."""
        left = [p for p in self.processes() if self._is_worker(p)]
        left += [psutil.Process(pid) for pid in self.worker_pids if psutil.pid_exists(pid)]
        for proc in left:
            try:
                proc.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(left, timeout=30)
        self.worker_pids.clear()
        self.worker_dir = f"w{int(self.worker_dir[1:] or 1) + 1}"
        self._start_worker()
        self._wait_for_nodes(2)

    def _is_worker(self, proc: psutil.Process) -> bool:
        try:
            return f"{self.root / self.worker_dir}/" in " ".join(proc.cmdline())
        except psutil.Error:
            return False

    def _output(self, command: list[str], assigned: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:]],
            env={**self.env(), **(assigned or {})},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def _run(self, command: list[str], assigned: dict[str, str], into: set[int]) -> None:
        before = {p.pid for p in self.processes()}
        try:
            self._output(command, assigned)
        finally:
            into.update(p.pid for p in self.processes() if p.pid not in before)

    def client_headers(self) -> dict[str, str] | None:
        """The Authorization header of this cluster's token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else None

    def _wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster in {self.root} did not get {count} nodes")
            time.sleep(1)

    def alive_nodes(self) -> int:
        """How many nodes the head counts alive (0 if it cannot be asked)."""
        from ray.job_submission import JobSubmissionClient

        try:
            client = JobSubmissionClient(self.jobs_address, headers=self.client_headers())
            nodes = client._do_request("GET", "/nodes?view=summary").json()
            return sum(n["raylet"]["state"] == "ALIVE" for n in nodes["data"]["summary"])
        except Exception:
            return 0

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: those naming its temporary directory in their
        command line or started with its ``HOME`` (the head's Ray Client server names
        neither its folder nor a parent once ``ray start`` has exited), and everything
        below them."""
        mark, home = str(self.root), str(self.home)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline", "environ"]):
            named = any(mark in part for part in proc.info["cmdline"] or ())
            if named or (proc.info["environ"] or {}).get("HOME") == home:
                found[proc.pid] = proc
        for proc in list(found.values()):
            try:
                found.update((c.pid, c) for c in proc.children(recursive=True))
            except psutil.Error:
                continue
        return list(found.values())

    def worker_raylet(self) -> psutil.Process:
        """The second node's raylet."""
        for proc in self.processes():
            try:
                words = proc.cmdline()
            except psutil.Error:
                continue
            if words and words[0].endswith("/raylet") and str(self.root / "w") in " ".join(words):
                return proc
        raise LookupError("the second node has no raylet")

    def stop(self) -> None:
        """SIGKILL every process this cluster started, by pid; wait until they are gone."""
        procs = self.processes()
        for pid in self.head_pids | self.worker_pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                continue
        psutil.wait_procs(procs, timeout=30)
