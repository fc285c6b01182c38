"""The one subprocess layer: every process an activity starts goes through here.

Agent runners (``activities/agents.py``), workstream shell steps
(``activities/workstream.py``) and git (``activities/git.py``) start their
processes with :func:`run_process_split` (async, heartbeating) or :func:`run_sync`
(blocking, for short commands such as git). Every child

* starts in a session and process group of its own (its pgid is its pid), so
  its whole tree can be killed with one ``killpg``;
* is started by a tiny supervisor, ``activities/supervise.py``, as the direct
  child and group leader. The supervisor sets the Linux parent-death signal on
  itself (``prctl(PR_SET_PDEATHSIG)``): when the worker dies, even by
  ``kill -9``, it kills the whole group (the command and whatever the command
  started) before it exits, and when the command ends it kills what the
  command left running in the group. Nothing runs between fork and exec in the
  worker (no ``preexec_fn``: forking a process with threads, as a Temporal
  worker has, and running Python code in the child can deadlock before exec,
  which hung a git call for good);
* is killed with its whole group when it outlives its timeout, when the
  activity is cancelled, or when the waiting code fails.

**Fencing.** A process that an attempt started in a workspace can outlive the
attempt (its worker was killed and the child's own children survived). Before
an attempt starts a process for a step (or SDLC round) it takes the step's
:class:`Fence`, a small JSON file in a directory private to the workspace (the
worktree's git directory, never the work tree): taking it kills the process
group the previous owner recorded, if still alive, and records the new owner;
the attempt then records its own pgid before its process may run (the
supervisor waits on a pipe for the worker's go before it starts the command).
An attempt commits what its process made only while it still owns the fence
(:meth:`Fence.owned`), so an older attempt can never touch what a later one
committed.

Only the environment given is passed to the child (``env=None`` inherits the
worker's, as git does); this layer adds nothing to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

HEARTBEAT_EVERY = 1.0  # seconds between heartbeats while a process runs
KILL_WAIT = 3.0  # seconds to wait for a killed group to disappear
DRAIN_AFTER_KILL = 1.0  # seconds a timed-out process's pipes may take to reach EOF
READ_CHUNK = 65536  # bytes read from a child's stdout or stderr at a time


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22 of
    ``/proc/<pid>/stat``), or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(raw.rsplit(")", 1)[1].split()[19])


def group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill_group(pgid: int, started: int | None = None, wait: float = KILL_WAIT) -> bool:
    """SIGKILL process group ``pgid`` and wait up to ``wait`` seconds for it to go.

    ``started`` is the group leader's :func:`start_time` when it was recorded: a
    live leader with another start time means the pid was reused, and nothing is
    killed. (While any member of a group lives, the kernel does not hand its pgid
    to a new process, so a group whose leader is gone is still the recorded one.)

    Returns:
        True when a live group was killed.
    """
    now = start_time(pgid)
    if now is not None and started is not None and now != started:
        return False
    if not group_members(pgid):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


class Fence:
    """Who owns a step's processes in a workspace (see the module docstring).

    The record is ``<directory>/<key>.json``: ``{"owner", "pgid", "started"}``;
    reads and writes hold an flock on ``<directory>/.lock``.

    Args:
        directory: private to the workspace (e.g. the worktree's git directory
            joined with ``orchestrator-fences``); made when missing.
        key: the step or round, e.g. ``agent-round-2`` or ``step-build-1``.
        owner: this attempt, unique (e.g. activity ID, attempt and a random part).
    """

    def __init__(self, directory: Path, key: str, owner: str) -> None:
        self.directory = directory
        self.path = directory / (re.sub(r"[^A-Za-z0-9._-]+", "_", key) + ".json")
        self.owner = owner
        self._taken = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                record = json.loads(self.path.read_text())
            except (FileNotFoundError, ValueError):
                record = {}
            yield record

    def _write(self, record: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.path)

    def take(self) -> int | None:
        """Kill the process group an earlier owner recorded (if alive) and become
        the owner. Returns the pgid killed, or None. Taking again (the same object)
        only checks that no later owner took over meanwhile.

        Raises:
            ApplicationError: (type ``AttemptSuperseded``, non-retryable) taken
                again after a later owner took the fence.
        """
        with self._locked() as record:
            if self._taken:
                if record.get("owner") not in (None, self.owner):
                    raise self._superseded(record)
                return None
            self._taken = True
            killed = None
            if record.get("pgid") and kill_group(record["pgid"], record.get("started")):
                killed = record["pgid"]
            self._write({"owner": self.owner, "pgid": None, "started": None,
                         "killed": killed})
            return killed

    def record(self, pgid: int) -> None:
        """Record this owner's process group. A later owner that took the fence in
        the meantime wins: the group is killed and ApplicationError raised.

        Raises:
            ApplicationError: (type ``AttemptSuperseded``, non-retryable).
        """
        with self._locked() as record:
            if record.get("owner") not in (None, self.owner):
                kill_group(pgid)
                raise self._superseded(record)
            self._write({"owner": self.owner, "pgid": pgid, "started": start_time(pgid)})

    def release(self) -> None:
        """Forget this owner's process group (it ended); ownership stays."""
        with self._locked() as record:
            if record.get("owner") == self.owner:
                self._write({"owner": self.owner, "pgid": None, "started": None})

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Run the ``with`` block only while this attempt owns the fence, holding
        the fence's lock (so no later attempt takes over during the block): wrap
        the commit of what the attempt's process made.

        Raises:
            ApplicationError: (type ``AttemptSuperseded``, non-retryable) a later
                attempt of the same step took over; nothing may be committed.
        """
        with self._locked() as record:
            if record.get("owner") not in (None, self.owner):
                raise self._superseded(record)
            yield

    def _superseded(self, record: dict) -> ApplicationError:
        return ApplicationError(
            f"attempt {self.owner} was superseded by {record.get('owner')}; its work "
            "is discarded", type="AttemptSuperseded", non_retryable=True)


def kill_fenced(directory: Path) -> list[int]:
    """Kill every live process group recorded by a fence in ``directory`` (used
    before a workspace is removed). Returns the pgids killed."""
    killed = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("pgid") and kill_group(record["pgid"], record.get("started")):
            killed.append(record["pgid"])
    return killed


def attempt_owner() -> str:
    """A unique owner name for the running activity attempt:
    ``<workflow ID>/<activity ID>#<attempt>/<random>`` (outside an activity, the pid)."""
    suffix = os.urandom(4).hex()
    if not activity.in_activity():
        return f"pid{os.getpid()}/{suffix}"
    info = activity.info()
    return f"{info.workflow_id}/{info.activity_id}#{info.attempt}/{suffix}"


# The direct child of run_process_split (see its module docstring): run by the
# worker's interpreter in isolated mode (no site, no environment, no path).
SUPERVISOR = Path(__file__).with_name("supervise.py")


class ProcessTimeout(ApplicationError):
    """A process ran longer than its timeout and was killed (``ApplicationError`` of
    type ``AgentTimeout``), with what it wrote until then.

    Attributes:
        stdout, stderr: the output read before the kill (text; stderr is "" when
            it was merged into stdout). Not part of the error's details, so they
            never reach history unless the caller puts (an excerpt of) them there.
    """

    def __init__(self, message: str, stdout: str = "", stderr: str = "") -> None:
        super().__init__(message, type="AgentTimeout")
        self.stdout = stdout
        self.stderr = stderr


def _kill_proc_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_process_split(
    argv: list[str], *, cwd: Path, env: Mapping[str, str] | None, stdin: bytes,
    timeout: float, merge_stderr: bool = False, label: str = "agent",
    fence: Fence | None = None,
) -> tuple[int, str, str]:
    """Run a process in a session and process group of its own, under the
    supervisor (``activities/supervise.py``) that kills the whole group when the
    worker dies, heartbeating every HEARTBEAT_EVERY seconds while it runs.

    Args:
        env: the child's whole environment (None: the worker's).
        stdin: bytes written to the child's stdin.
        timeout: seconds of wall-clock time the process may take.
        merge_stderr: send stderr to stdout.
        label: what ran, for the timeout message.
        fence: taken before the process starts (killing an earlier attempt's
            group) and given the new pgid; released when the process ends.

    Returns:
        (exit code, stdout, stderr); stderr is "" when ``merge_stderr``. A
        process killed by signal N has exit code -N; a command that cannot be
        started exits 127 with the reason on stderr.

    Raises:
        ProcessTimeout: (an ``ApplicationError`` of type ``AgentTimeout``) ran longer
            than ``timeout`` seconds; the group is killed first, and the error holds
            the output read until then.
        ApplicationError: ``AttemptSuperseded`` from the fence.
        asyncio.CancelledError: the activity was cancelled (the group is killed first).
    """
    gate_r = gate_w = -1
    if fence is not None:
        await asyncio.to_thread(fence.take)
        # the supervisor starts the command after the worker recorded its pgid
        gate_r, gate_w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *supervised(argv, gate=gate_r), cwd=cwd, env=dict(env) if env is not None else None,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            start_new_session=True,
            pass_fds=(gate_r,) if fence is not None else (),
        )
    finally:
        if fence is not None:
            os.close(gate_r)
    out_buf, err_buf = bytearray(), bytearray()

    async def pump(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
        while stream is not None and (chunk := await stream.read(READ_CHUNK)):
            sink.extend(chunk)

    async def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if stdin:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
        proc.stdin.close()

    async def communicate_all() -> None:
        # read as it comes (not proc.communicate()), so a timeout keeps what was written
        await asyncio.gather(feed(), pump(proc.stdout, out_buf), pump(proc.stderr, err_buf))
        await proc.wait()

    def text(buf: bytearray) -> str:
        return bytes(buf).decode(errors="replace")

    communicate = asyncio.ensure_future(communicate_all())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        if fence is not None:
            try:
                await asyncio.to_thread(fence.record, proc.pid)
                os.write(gate_w, b"go\n")
            finally:
                os.close(gate_w)  # unopened (EOF): the child exits without running
        while True:
            wait = min(HEARTBEAT_EVERY, max(deadline - loop.time(), 0))
            done, _ = await asyncio.wait({communicate}, timeout=wait)
            if done:
                communicate.result()
                return proc.returncode or 0, text(out_buf), text(err_buf)
            if activity.in_activity():
                activity.heartbeat()
            if loop.time() >= deadline:
                _kill_proc_group(proc.pid)  # then read what its pipes still hold
                await asyncio.wait({communicate}, timeout=DRAIN_AFTER_KILL)
                raise ProcessTimeout(
                    f"{label} {argv[0]} ran longer than {timeout:.0f} s and was killed",
                    text(out_buf), text(err_buf))
    finally:
        # the whole group, also when the leader already exited but its children live
        _kill_proc_group(proc.pid)
        if proc.returncode is None:
            communicate.cancel()
            await asyncio.shield(proc.wait())
        if fence is not None:
            await asyncio.shield(asyncio.to_thread(fence.release))


async def run_process(
    argv: list[str], *, cwd: Path, env: Mapping[str, str] | None, stdin: bytes,
    timeout: float, fence: Fence | None = None,
) -> tuple[int, str]:
    """:func:`run_process_split` with stderr merged into stdout.

    Returns:
        (exit code, combined stdout and stderr as text).
    """
    code, out, _ = await run_process_split(argv, cwd=cwd, env=env, stdin=stdin,
                                           timeout=timeout, merge_stderr=True, fence=fence)
    return code, out


def supervised(argv: list[str], *, gate: int) -> list[str]:
    """The argv that runs ``argv`` under ``activities/supervise.py`` for this worker
    process: ``gate`` is the read end of the go pipe, or -1 to start at once."""
    return [sys.executable, "-I", "-S", str(SUPERVISOR), str(os.getpid()), str(gate), *argv]


def run_sync(argv: list[str], *, cwd: Path | str, timeout: float,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion (blocking), in its own process group under
    the supervisor (see the module docstring); text stdout and stderr captured. A
    command that cannot be started exits 127 with the reason on stderr.

    Raises:
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds (its
            group is killed first).
    """
    with subprocess.Popen(supervised(argv, gate=-1), cwd=cwd,
                          env=dict(env) if env is not None else None,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_proc_group(proc.pid)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
