"""People at the gates, through the CLI on the dev server: ``--follow`` shows the
gate as it opens and exits non-zero when the run ends FAILED; ``inbox`` finds the
gate through the OpenGates / GateReviewers search attributes; ``pending_gates``
carries a ready-to-paste decision."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time

from temporalio.client import Client

from settings import Settings
from tests.integration.test_cli import ROOT, acli, env  # noqa: F401
from worker import make_worker
from workflows.search_attributes import GATE_OPENED_AT, GATE_REVIEWERS, OPEN_GATES


async def wait_for_gate(client: Client, wf_id: str) -> None:
    for _ in range(400):
        desc = await client.get_workflow_handle(wf_id).describe()
        if desc.typed_search_attributes.get(OPEN_GATES):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the gate never showed in the search attributes")


async def test_follow_inbox_and_exit_code(dev_env, env, task_queue, git_repo,  # noqa: F811
                                          tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):
        follower = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "starter.py"), "sdlc", "start", "--title",
            "Inbox check", "--repo", str(git_repo), "--reviewer", "alice", "--max-rounds", "1",
            "--follow", env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        wf_id = f"sdlc-{git_repo.name}-inbox-check"
        try:
            for _ in range(200):  # the follower started it
                try:
                    await dev_env.client.get_workflow_handle(wf_id).describe()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            await wait_for_gate(dev_env.client, wf_id)
            desc = await dev_env.client.get_workflow_handle(wf_id).describe()
            assert desc.typed_search_attributes.get(OPEN_GATES) == ["GATE_1"]
            assert desc.typed_search_attributes.get(GATE_REVIEWERS) == ["alice"]
            assert desc.typed_search_attributes.get(GATE_OPENED_AT) is not None

            inbox = json.loads((await acli("inbox", "--as", "alice", "--json", env=env)).stdout)
            mine = [row for row in inbox if row["workflow_id"] == wf_id]
            assert len(mine) == 1 and mine[0]["gate"] == "GATE_1"
            assert mine[0]["allowed_actors"] == ["alice"]
            assert "spec" in mine[0]["prompt"] and mine[0]["artifact"]
            assert f"python starter.py approve {wf_id} --gate GATE_1 --as alice" in \
                mine[0]["commands"]
            assert json.loads(mine[0]["decision_json"]) == {
                "gate": "GATE_1", "verdict": "approve", "actor": "alice", "comment": ""}
            text = (await acli("inbox", "--as", "alice", env=env)).stdout
            assert f"== gate GATE_1 is open on {wf_id}" in text and "who may decide: alice" in text
            bob = json.loads((await acli("inbox", "--as", "bob", "--json", env=env)).stdout)
            assert wf_id not in [row["workflow_id"] for row in bob]

            rejected = await acli("reject", wf_id, "--as", "alice", "--comment", "no", env=env)
            assert rejected.returncode == 0, rejected.stderr
            out, err = await asyncio.wait_for(follower.communicate(), timeout=120)
        finally:
            if follower.returncode is None:
                follower.kill()
                await follower.wait()
        stdout, stderr = out.decode(), err.decode()
        assert follower.returncode == 3, (stdout, stderr)
        assert f"== gate GATE_1 is open on {wf_id}" in stdout
        assert "who may decide: alice" in stdout
        assert f"python starter.py approve {wf_id} --gate GATE_1" in stdout
        assert "ended FAILED" in stderr and "Traceback" not in stderr
        desc = await dev_env.client.get_workflow_handle(wf_id).describe()
        assert not desc.typed_search_attributes.get(OPEN_GATES)  # unset once decided
        empty = json.loads((await acli("inbox", "--as", "alice", "--json", env=env)).stdout)
        assert wf_id not in [row["workflow_id"] for row in empty]


def read_until(fd: int, marker: str, timeout: float = 90.0) -> str:
    """Read a pty's output until ``marker`` shows (or fail after ``timeout`` s)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{marker!r} never showed; output so far: {seen!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            try:
                seen += os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
    return seen


async def test_review_asks_on_a_terminal_and_decides_as_the_reviewer(
        dev_env, env, task_queue, git_repo, tmp_path):  # noqa: F811
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):
        started = await acli("sdlc", "start", "--title", "Review check", "--repo",
                             str(git_repo), "--reviewer", "alice", "--json", env=env)
        wf_id = json.loads(started.stdout)["workflow_id"]
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, str(ROOT / "starter.py"), "review", wf_id,
                                 "--as", "alice"], stdin=slave, stdout=slave,
                                stderr=subprocess.PIPE, env=env, cwd=ROOT)
        os.close(slave)
        try:
            shown = await asyncio.to_thread(read_until, master, "[s]kip?")
            assert f"== gate GATE_1 is open on {wf_id}" in shown
            assert "to judge: " in shown and "who may decide: alice" in shown
            os.write(master, b"v\n")  # revise: round 2, then approve
            await asyncio.to_thread(read_until, master, "comment")
            os.write(master, b"more detail\n")
            shown = await asyncio.to_thread(read_until, master, "[s]kip?")
            assert "GATE_1: revise accepted" in shown
            assert "changes since round 1: git -C " in shown and "diff HEAD~1 -- " in shown
            os.write(master, b"a\n")
            await asyncio.to_thread(read_until, master, "comment")
            os.write(master, b"looks right\n")
            rest = await asyncio.to_thread(read_until, master, "ended DONE")
            assert "GATE_1: approve accepted" in rest
            assert await asyncio.to_thread(proc.wait, 60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
        audit = (await acli("audit", wf_id, env=env)).stdout
        assert "GATE_1: approve (via update) [alice] — looks right" in audit
