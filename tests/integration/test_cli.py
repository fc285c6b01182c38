"""The CLI as a user runs it (``python starter.py ...``) against the dev server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.server import free_port
from settings import Settings
from worker import make_worker

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


async def acli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]


@pytest.fixture
def env(dev_env, task_queue, tmp_path) -> dict[str, str]:
    return {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(tmp_path / "home")}


def test_unreachable_server_is_one_line(tmp_path):
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    assert_one_line_error(cli("status", "sdlc-x", env=env), "cannot reach Temporal")


def test_invalid_configuration_is_one_line(env):
    proc = cli("list", env={**env, "AGENT_RUNNER": "command"})
    assert_one_line_error(proc, "AGENT_RUNNER=command needs AGENT_COMMAND")
    assert proc.returncode == 2


async def test_unknown_workflow_id_is_one_line(env):
    assert_one_line_error(await acli("status", "sdlc-nope", env=env),
                          "no workflow with ID 'sdlc-nope'")


async def test_not_a_repository_is_one_line(env, tmp_path):
    assert_one_line_error(await acli("sdlc", "start", "--title", "X", "--repo", str(tmp_path),
                                     env=env), "is not a git repository")


async def test_sdlc_from_the_cli(dev_env, env, task_queue, git_repo, tmp_path):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    start = ("sdlc", "start", "--title", "Add CSV export", "--repo", str(git_repo), "--json")
    async with make_worker(dev_env.client, settings):
        started = await acli(*start, env=env)
        assert started.returncode == 0, started.stderr
        wf_id = json.loads(started.stdout)["workflow_id"]
        assert wf_id == f"sdlc-{git_repo.name}-add-csv-export"

        assert_one_line_error(await acli(*start, env=env), "already exists")
        assert_one_line_error(await acli("approve", wf_id, "--gate", "GATE_7", env=env),
                              "gate 'GATE_7' is not open")
        for _ in range(100):
            status = json.loads((await acli("status", wf_id, "--json", env=env)).stdout)
            if status["state"]["pending_gates"]:
                break
        assert status["state"]["phase"] == "GATE_1"
        assert_one_line_error(await acli("reject", wf_id, "--comment", " ", env=env),
                              "a reject decision needs a comment")
        approved = await acli("approve", wf_id, "--comment", "ship it", "--as", "ann", env=env)
        assert approved.returncode == 0 and "GATE_1: approve accepted" in approved.stdout
        result = json.loads((await acli("result", wf_id, "--wait", "--json", env=env)).stdout)
        assert result["phase"] == "DONE" and result["rounds"] == 1
        audit = (await acli("audit", wf_id, env=env)).stdout
        assert "GATE_1: approve (via update) [ann] — ship it" in audit
        listed = json.loads((await acli("list", "--type", "SdlcWorkflow", "--json",
                                        env=env)).stdout)
        assert wf_id in [row["workflow_id"] for row in listed]
        assert_one_line_error(await acli("approve", wf_id, env=env), "no gate is open")
