"""Malformed gate signals sent through the real ``temporal`` CLI are audited as refused.

An SDLC run (offline agent, real git) waits at GATE_1 on the dev server; each bad
signal goes through ``temporal workflow signal`` exactly as a user would send it,
and must leave a ``refused`` entry with a readable reason, while the gate stays
open and a good decision still lands afterwards.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from temporalio.client import WorkflowUpdateFailedError

from cli.gates import query
from cli.sdlc import feature_request, start_sdlc
from models.common import MAX_GATE_TEXT_BYTES, AuditEntry, GateDecision, Verdict
from models.sdlc import GATE_1, SdlcPhase, SdlcResult
from settings import Settings
from temporal_plumbing.environments import temporal_executable
from tests.integration.test_sdlc_dev import wait_gate
from worker import make_worker
from workflows.gates import GATE_SIGNAL, GATE_UPDATE, GatedWorkflow


async def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real temporal CLI against the test's dev server (on a thread: the
    worker runs on this event loop and must keep working while the CLI waits)."""
    return await asyncio.to_thread(
        subprocess.run, [temporal_executable(), *args, "--address", address],
        capture_output=True, text=True, timeout=60)


async def signal(address: str, workflow_id: str, name: str, *inputs: str) -> None:
    flags = [a for i in inputs for a in ("--input", i)]
    done = await cli(address, "workflow", "signal", "--workflow-id", workflow_id, "--name", name,
               *flags)
    assert done.returncode == 0, done.stderr


async def refused_entries(handle, count: int) -> list[AuditEntry]:
    """The refused entries once there are ``count`` of them (signals are async)."""
    for _ in range(300):
        entries = [e for e in await query(handle, GatedWorkflow.audit_log)
                   if e.kind == "refused"]
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} refused entries, got {len(entries)}: {entries}")


async def test_malformed_signals_become_refused_audit_entries(
        dev_env, task_queue, git_repo, tmp_path):
    address = dev_env.client.service_client.config.target_host
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    req = feature_request(settings, title="Add CSV export", repo_path=str(git_repo))
    big = "x" * (MAX_GATE_TEXT_BYTES + 1)
    big_file = tmp_path / "big.json"
    big_file.write_text(json.dumps({"gate": GATE_1, "verdict": "reject", "actor": "mallory",
                                    "comment": big}))
    async with make_worker(dev_env.client, settings):
        handle = await start_sdlc(dev_env.client, settings, req)
        await wait_gate(handle, 1)
        wid = handle.id
        await signal(address, wid, GATE_SIGNAL, '{"foo": 1}')
        await signal(address, wid, GATE_SIGNAL,
               '{"gate": "GATE_1", "verdict": "maybe", "actor": "alice"}')
        await signal(address, wid, GATE_SIGNAL, '{"gate": "GATE_1", "verdict": "approve"}')
        await signal(address, wid, "gate_decison",
               '{"gate": "GATE_1", "verdict": "approve", "actor": "bob"}')
        await signal(address, wid, GATE_SIGNAL)  # no input at all
        done = await cli(address, "workflow", "signal", "--workflow-id", wid, "--name", GATE_SIGNAL,
                   "--input-file", str(big_file))
        assert done.returncode == 0, done.stderr
        entries = await refused_entries(handle, 6)

        shape, verdict, actor, name, empty, size = entries
        assert shape.actor == "unknown"
        assert "gate: Field required" in shape.detail and "actor: Field required" in shape.detail
        assert verdict.actor == "alice"
        assert "verdict: Input should be 'approve', 'reject' or 'revise'" in verdict.detail
        assert "actor: Field required" in actor.detail and "verdict" not in actor.detail.split(
            "refused:")[1]
        assert name.actor == "bob" and "'gate_decison'" in name.detail
        assert "got 0 value(s)" in empty.detail
        assert size.actor == "mallory" and f"{MAX_GATE_TEXT_BYTES + 1:,} bytes" in size.detail
        assert len(size.comment) < 2000 and "truncated" in size.comment  # not the whole 64 KiB
        for entry in entries:
            assert len(entry.detail) < 600, entry.detail

        # the update refuses the same at once, and the gate is still open afterwards
        too_big = await cli(address, "workflow", "update", "execute", "--workflow-id", wid,
                      "--name", GATE_UPDATE, "--input-file", str(big_file))
        assert too_big.returncode != 0 and "over the limit" in too_big.stderr
        bad = await cli(address, "workflow", "update", "execute", "--workflow-id", wid,
                  "--name", GATE_UPDATE, "--input",
                  '{"gate": "GATE_1", "verdict": "maybe", "actor": "alice"}')
        assert bad.returncode != 0 and "verdict: Input should be" in bad.stderr
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate=GATE_1, verdict=Verdict.REJECT, actor="carol", comment=big))
        assert "over the limit" in str(refused.value.cause)

        await signal(address, wid, GATE_SIGNAL,
               '{"gate": "GATE_1", "verdict": "approve", "actor": "alice"}')
        result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == 1
    assert [e.kind for e in result.audit].count("refused") == 6
    assert any(e.kind == "decision" and e.actor == "alice" for e in result.audit)
