"""The CLI as a user runs it (``python starter.py ...``) against the dev server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from settings import Settings
from temporal_plumbing.environments import free_port, server_answers
from tests.fault_harness import eventually
from worker import make_worker
from workflows.sdlc import SdlcWorkflow

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


async def acli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, env=env)


async def two_at_a_time(*runs: Awaitable[T]) -> list[T]:
    """Await ``runs`` two at a time, results in order: CLI calls that only read or
    are refused, each a fresh interpreter, overlap on a two-core machine."""
    lanes = asyncio.Semaphore(2)

    async def one(run: Awaitable[T]) -> T:
        async with lanes:
            return await run

    return list(await asyncio.gather(*(one(run) for run in runs)))


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


def test_unreadable_description_file_is_one_line(env, git_repo, tmp_path):
    missing = tmp_path / "nope.md"
    proc = cli("sdlc", "start", "--title", "x", "--repo", str(git_repo),
               "--description-file", str(missing), env=env)
    assert_one_line_error(proc, f"No such file or directory: {missing}")


async def test_not_a_repository_is_one_line(env, tmp_path):
    assert_one_line_error(await acli("sdlc", "start", "--title", "X", "--repo", str(tmp_path),
                                     env=env), "is not a git repository")


async def test_sdlc_from_the_cli(dev_env, env, task_queue, git_repo, tmp_path):
    """Waits for the gate in-process (a query), then runs the commands that only read
    or are refused two at a time: each is a fresh interpreter."""
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    start = ("sdlc", "start", "--title", "Add CSV export", "--repo", str(git_repo), "--json")
    async with make_worker(dev_env.client, settings):
        started = await acli(*start, env=env)
        assert started.returncode == 0, started.stderr
        wf_id = json.loads(started.stdout)["workflow_id"]
        assert wf_id == f"sdlc-{git_repo.name}-add-csv-export"
        handle = dev_env.client.get_workflow_handle(wf_id)

        async def gate_open() -> bool:
            return bool((await handle.query(SdlcWorkflow.state)).pending_gates)

        again, gate7 = await two_at_a_time(
            acli(*start, env=env), acli("approve", wf_id, "--gate", "GATE_7", env=env))
        assert_one_line_error(again, "already exists")
        assert_one_line_error(gate7, "gate 'GATE_7' is not open")
        await eventually(gate_open, "GATE_1", 60, every=0.05)
        status, text, blank = await two_at_a_time(
            acli("status", wf_id, "--json", env=env), acli("status", wf_id, env=env),
            acli("reject", wf_id, "--comment", " ", env=env))
        state = json.loads(status.stdout)["state"]
        assert state["phase"] == "GATE_1" and state["pending_gates"]
        # no GATE_SIGNERS on the worker: status says the gate takes anyone's decision
        assert "NOT AUTHENTICATED" in text.stdout
        assert_one_line_error(blank, "a reject decision needs a comment")
        approved = await acli("approve", wf_id, "--comment", "ship it", "--as", "ann", env=env)
        assert approved.returncode == 0 and "GATE_1: approve accepted" in approved.stdout
        result = json.loads((await acli("result", wf_id, "--wait", "--json", env=env)).stdout)
        assert result["phase"] == "DONE" and result["rounds"] == 1
        audit, listed, closed = await two_at_a_time(
            acli("audit", wf_id, env=env), acli("list", "--type", "SdlcWorkflow", "--json",
                                                 env=env),
            acli("approve", wf_id, env=env))
        assert "GATE_1: approve (via update) [ann] — ship it" in audit.stdout
        assert wf_id in [row["workflow_id"] for row in json.loads(listed.stdout)]
        assert_one_line_error(closed, "no gate is open")


async def test_dev_server_says_so_when_one_already_answers(env, dev_env):
    port = env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]
    proc = await acli("dev-server", "--port", port, env=env)
    assert proc.returncode == 0 and "already answers" in proc.stdout


async def test_demo_signs_with_a_key_of_its_own_when_gate_signers_is_set(
        dev_env, env, task_queue, tmp_path):
    """`make demo` on a worker configuration with GATE_SIGNERS: the demo reviewer is
    no listed key, so the demo makes one for itself, lets its own worker allow only that
    key, and signs; the run still ends DONE, decided by key:demo-reviewer."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from models.signatures import public_key_line
    allowed = tmp_path / "allowed_signers"
    alice = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    allowed.write_text(f"alice {public_key_line(alice)}\n")
    before = allowed.read_text()
    demo = await acli("demo", env={**env, "GATE_SIGNERS": str(allowed)})
    assert demo.returncode == 0, demo.stderr
    assert "signs as key:demo-reviewer with a key made for the demo" in demo.stdout
    assert "DONE after 2 round(s)" in demo.stdout
    wf_id = next(line.split()[1] for line in demo.stdout.splitlines()
                 if line.startswith("workflow "))
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):  # answers the audit query
        audit = (await acli("audit", wf_id, env=env)).stdout
    assert "GATE_1: reject (via update) [key:demo-reviewer]" in audit
    assert "GATE_1: approve (via update) [key:demo-reviewer]" in audit
    assert "gate decisions must be signed" in audit
    assert allowed.read_text() == before  # the worker's own file is left alone


async def test_demo_runs_the_main_job_and_leaves_the_server_for_the_ui(tmp_path):
    """`demo` on a machine with no server: starts one in the background, runs the SDLC
    demo to DONE, and `dev-server --stop` stops that server."""
    port, ui_port = free_port(), free_port()
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
           "TEMPORAL_UI_URL": f"http://localhost:{ui_port}",
           "ORCHESTRATOR_HOME": str(tmp_path / "home")}
    try:
        demo = await acli("demo", env=env)
        assert demo.returncode == 0, demo.stderr
        out = demo.stdout
        assert "starting the embedded Temporal dev server" in out
        assert "demo reviewer: reject" in out and "demo reviewer: approve" in out
        assert "DONE after 2 round(s)" in out
        assert f"http://localhost:{ui_port}/namespaces/default/workflows/sdlc-demo-repo-" in out
        commit = next(line.split()[1] for line in out.splitlines()
                      if line.strip().startswith("commit:"))
        assert len(commit) == 40
        listed = await acli("list", "--json", env=env)
        assert json.loads(listed.stdout)[0]["search_attributes"]["SdlcPhase"] == ["DONE"]
    finally:
        stopped = await acli("dev-server", "--stop", env=env)
    assert "dev server stopped" in stopped.stdout
    for _ in range(100):
        if not server_answers(f"127.0.0.1:{port}"):
            break
        await asyncio.sleep(0.1)
    assert not server_answers(f"127.0.0.1:{port}")
