"""The subprocess layer (activities/processes.py) with real processes: the parent-death
signal, process groups, fences between attempts, and git timeouts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.git import GitError, git
from activities.processes import Fence, group_members, kill_fenced, run_process_split, run_sync
from tests.fault_harness import alive

ROOT = Path(__file__).resolve().parents[2]




def _wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was never written")


def _gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def _fake_worker(tmp_path: Path, script: str, fence_dir: Path) -> subprocess.Popen:
    """A Python process standing in for a worker: runs ``script`` through the layer,
    fenced as ``step-x-1``, writing the started process's pid to ``leader.pid``."""
    code = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from activities.processes import Fence, run_process_split
        fence = Fence(Path({str(fence_dir)!r}), "step-x-1", "attempt-1")
        asyncio.run(run_process_split(["/bin/sh", "-c", {script!r}], cwd=Path({str(tmp_path)!r}),
                                      env=None, stdin=b"", timeout=120, fence=fence))
    """)
    return subprocess.Popen([sys.executable, "-c", code])


def _tree(tmp_path: Path, fences: Path) -> tuple[subprocess.Popen, int, int, int, int]:
    """A fake worker running a shell step whose child and grandchild sleep: returns
    (worker, supervisor pid, shell pid, sleeper pid, grand-sleeper pid)."""
    script = (f"sh -c 'sleep 300 & echo $! > {tmp_path}/grand.pid; wait' & "
              f"echo $! > {tmp_path}/sleep.pid; echo $$ > {tmp_path}/sh.pid; wait")
    worker = _fake_worker(tmp_path, script, fences)
    shell = int(_wait_for(tmp_path / "sh.pid"))
    sleeper = int(_wait_for(tmp_path / "sleep.pid"))
    grand = int(_wait_for(tmp_path / "grand.pid"))
    supervisor = os.getpgid(shell)
    # one process group of its own, led by the supervisor, the worker's direct child
    assert supervisor != shell and os.getpgid(sleeper) == os.getpgid(grand) == supervisor
    assert Path(f"/proc/{supervisor}/stat").read_text().split()[3] == str(worker.pid)
    return worker, supervisor, shell, sleeper, grand


def test_the_whole_tree_dies_with_its_worker(tmp_path):
    fences = tmp_path / "fences"
    worker, supervisor, shell, sleeper, grand = _tree(tmp_path, fences)
    worker.send_signal(signal.SIGKILL)  # kill -9 of the worker running the step
    worker.wait()
    for pid in (supervisor, shell, sleeper, grand):
        assert _gone(pid), f"process {pid} of the dead worker's step still runs"
    assert group_members(supervisor) == []
    assert Fence(fences, "step-x-1", "attempt-2").take() is None  # nothing left to fence


def test_a_new_attempt_kills_a_group_that_outlived_its_worker(tmp_path):
    fences = tmp_path / "fences"
    worker, supervisor, shell, sleeper, grand = _tree(tmp_path, fences)
    os.kill(supervisor, signal.SIGSTOP)  # a stopped supervisor cannot act on its signal
    try:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        time.sleep(0.2)
        assert all(alive(pid) for pid in (shell, sleeper, grand))

        fence = Fence(fences, "step-x-1", "attempt-2")
        assert fence.take() == supervisor  # the fence is the backstop
        assert all(_gone(pid) for pid in (supervisor, shell, sleeper, grand))
        assert group_members(supervisor) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor, signal.SIGKILL)
    with fence.owned():
        pass
    with pytest.raises(ApplicationError) as err:
        with Fence(fences, "step-x-1", "attempt-1").owned():
            pass
    assert err.value.type == "AttemptSuperseded" and err.value.non_retryable


async def test_the_supervisor_passes_on_exit_status_and_kills_what_the_command_left(
        tmp_path):
    code, out, err = await run_process_split(
        ["sh", "-c", f"sleep 300 & echo $! > {tmp_path}/bg.pid; echo out; echo err >&2; "
                     "exit 3"], cwd=tmp_path, env={"PATH": os.environ["PATH"]},
        stdin=b"", timeout=60)
    assert (code, out, err) == (3, "out\n", "err\n")  # not held open by the sleep
    assert _gone(int((tmp_path / "bg.pid").read_text()))
    assert (await run_process_split(["sh", "-c", "cat; kill -TERM $$"], cwd=tmp_path,
                                    env=None, stdin=b"in", timeout=60))[:2] == (-15, "in")
    assert (await run_process_split(["sh", "-c", "yes | head -1"], cwd=tmp_path, env=None,
                                    stdin=b"", timeout=60))[:2] == (0, "y\n")
    assert await run_process_split(["no-such-command-x"], cwd=tmp_path, env=None,
                                   stdin=b"", timeout=60) == (
        127, "", "no-such-command-x: No such file or directory\n")


def test_kill_fenced_kills_every_recorded_group_and_spares_reused_pids(tmp_path):
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    fence = Fence(tmp_path, "agent-round-1", "a")
    fence.take()
    fence.record(proc.pid)
    assert kill_fenced(tmp_path) == [proc.pid]
    proc.wait()

    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (tmp_path / "agent-round-1.json").write_text(
            f'{{"owner": "a", "pgid": {other.pid}, "started": 1}}')  # another start time
        assert kill_fenced(tmp_path) == [] and alive(other.pid)
    finally:
        other.kill()
        other.wait()


def test_git_commands_time_out_and_are_killed(git_repo):
    started = time.monotonic()
    with pytest.raises(GitError, match="ran longer than"):
        git(git_repo, "-c", "alias.hang=!sleep 30", "hang", timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(subprocess.TimeoutExpired):
        run_sync(["sleep", "30"], cwd=git_repo, timeout=0.2)
    assert git(git_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
