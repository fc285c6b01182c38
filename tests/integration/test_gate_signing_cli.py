"""Signed gate decisions as a reviewer makes them: ``python starter.py approve/revise
--key`` and through ssh-agent, ``keys`` and ``status``, on the dev server with a worker
that has GATE_SIGNERS, keys made by the real ssh-keygen."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from models.common import GateInfo
from models.sdlc import SdlcPhase, SdlcResult
from settings import Settings
from tests.integration.test_cli import acli, assert_one_line_error
from worker import make_worker

needs_openssh = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("ssh-keygen", "ssh-agent", "ssh-add")),
    reason="ssh-keygen/ssh-agent/ssh-add are not installed (apt-get install openssh-client)")


def keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


async def wait_opening(handle, opening: int) -> GateInfo:
    for _ in range(400):
        gates = await handle.query("pending_gates", result_type=list[GateInfo])
        if gates and gates[0].opening == opening:
            return gates[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"opening {opening} of the gate never came")


@needs_openssh
async def test_reviewer_signs_with_a_key_file_and_with_ssh_agent(dev_env, task_queue, git_repo,
                                                                 tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    alice, bob = keygen(keys / "alice", "alice@laptop"), keygen(keys / "bob", "bob@laptop")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice {alice}\nbob {bob}\n")
    home = tmp_path / "home-dir"  # ~/.ssh holds bob's key and mallory's, not alice's
    (home / ".ssh").mkdir(parents=True)
    for name in ("bob", "bob.pub"):
        shutil.copy(keys / name, home / ".ssh" / name)
    keygen(home / ".ssh" / "mallory", "mallory@evil")
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(tmp_path / "orch"),
           "HOME": str(home)}
    env.pop("SSH_AUTH_SOCK", None)
    settings = Settings(orchestrator_home=tmp_path / "orch", temporal_task_queue=task_queue,
                        gate_signers=allowed)
    agent = None
    try:
        async with make_worker(dev_env.client, settings):
            started = await acli("sdlc", "start", "--title", "Add CSV export", "--repo",
                                 str(git_repo), "--reviewer", "key:alice", "--json", env=env)
            assert started.returncode == 0, started.stderr
            handle = dev_env.client.get_workflow_handle(json.loads(started.stdout)["workflow_id"])
            assert (await wait_opening(handle, 1)).signatures_required

            status = await acli("status", handle.id, env=env)
            assert "decisions must be signed by an allowed key" in status.stdout
            assert_one_line_error(await acli("approve", handle.id, "--as", "alice", env=env),
                                  "--as alice is refused")
            # ~/.ssh's keys: bob is a signer but not a reviewer here, mallory is no signer
            assert_one_line_error(await acli("approve", handle.id, env=env),
                                  "none of your keys may decide GATE_1")
            revised = await acli("revise", handle.id, "--key", str(keys / "alice"),
                                 "--comment", "list the columns", env=env)
            assert revised.returncode == 0, revised.stderr
            await wait_opening(handle, 2)

            # round 2: alice's key in ssh-agent, found without --key
            sock = tmp_path / "agent.sock"
            out = subprocess.run(["ssh-agent", "-a", str(sock), "-s"], capture_output=True,
                                 text=True, check=True).stdout
            agent = int(out.split("SSH_AGENT_PID=")[1].split(";")[0])
            env["SSH_AUTH_SOCK"] = str(sock)
            subprocess.run(["ssh-add", "-q", str(keys / "alice")], env=env, check=True,
                           capture_output=True)
            shown = (await acli("keys", handle.id, env=env)).stdout
            assert "ssh-agent (alice@laptop): accepted as key:alice" in shown, shown
            assert "bob.pub (bob@laptop): not accepted (signs as key:bob)" in shown, shown
            assert "mallory.pub (mallory@evil): not in the allowed signers" in shown, shown
            approved = await acli("approve", handle.id, "--comment", "ship it", env=env)
            assert approved.returncode == 0, approved.stderr
            result = SdlcResult.model_validate(await handle.result())
    finally:
        if agent:
            os.kill(agent, signal.SIGTERM)
    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    decisions = [e for e in result.audit if e.kind == "decision"]
    assert [(e.actor, e.comment) for e in decisions] == [
        ("key:alice", "list the columns"), ("key:alice", "ship it")]
    assert any(e.kind == "gate_signers" and "must be signed" in e.detail for e in result.audit)
