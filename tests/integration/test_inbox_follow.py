"""People at the gates, through the CLI on the dev server: ``--follow`` shows the
gate as it opens and exits non-zero when the run ends FAILED; ``inbox`` finds the
gate through the OpenGates / GateReviewers search attributes; ``pending_gates``
carries a ready-to-paste decision."""

from __future__ import annotations

import asyncio
import json
import sys

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
