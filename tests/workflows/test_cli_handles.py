"""The CLI's generic commands (``status``, ``audit``, ``approve``, ``review``) reach a
workflow only through its class's methods: run for real (``starter.main``) against
runs on the time-skipping server, and the type-name lookup they rely on."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio import workflow

import starter
from cli.common import QUERY_TIMEOUT
from cli.learning import learning_config, start_learning
from cli.review import SUCCESS_STATES
from cli.sdlc import feature_request, start_sdlc
from settings import Settings
from tests.learning_support import imported_database, learning_settings
from worker import ALL_WORKFLOWS, make_worker
from workflows.registry import ORCHESTRATIONS, STATE_QUERIES, workflow_class, workflow_type
from workflows.sdlc import SdlcWorkflow


@pytest.fixture
def cli_env(ts_env, task_queue, tmp_path, monkeypatch):
    """The CLI's environment: the test server and the test's task queue."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", ts_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", task_queue)
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))


async def cli(capsys, *argv: str) -> tuple[int, str]:
    """``python starter.py ARGV`` in this process (its own event loop, in a thread):
    the exit code and stdout."""
    capsys.readouterr()
    code = await asyncio.to_thread(starter.main, list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out


def test_every_workflow_is_registered_under_its_class_name():
    for cls in ALL_WORKFLOWS:
        name = workflow._Definition.must_from_class(cls).name
        assert workflow_type(cls) == name and workflow_class(name) is cls
    assert workflow_class("NoSuchWorkflowType") is None
    # every orchestration has its state query and its success state
    assert set(STATE_QUERIES) == set(SUCCESS_STATES) == set(ORCHESTRATIONS)
    for cls, fn in STATE_QUERIES.items():
        assert workflow._QueryDefinition.from_fn(fn) is not None, cls


async def test_status_audit_approve_review_of_an_sdlc_run(ts_env, task_queue, tmp_path,
                                                          git_repo, cli_env, capsys):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(ts_env.client, settings):
        handle = await start_sdlc(ts_env.client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(git_repo)))
        for _ in range(200):
            if await handle.query(SdlcWorkflow.pending_gates, rpc_timeout=QUERY_TIMEOUT):
                break
            await asyncio.sleep(0.05)
        code, out = await cli(capsys, "status", handle.id, "--json")
        status = json.loads(out)
        assert code == 0 and status["type"] == "SdlcWorkflow"
        assert status["state"]["phase"] == "GATE_1"
        assert [g["gate"] for g in status["state"]["pending_gates"]] == ["GATE_1"]
        code, out = await cli(capsys, "approve", handle.id, "--as", "ann")
        assert code == 0 and "GATE_1: approve accepted" in out
        code, out = await cli(capsys, "review", handle.id, "--no-input")
        assert code == 0 and f"{handle.id} ended DONE" in out
        code, out = await cli(capsys, "audit", handle.id)
        assert "GATE_1 -> DONE" in out and "[ann]" in out


async def test_status_of_a_learning_loop(ts_env, task_queue, tmp_path, cli_env, capsys):
    url = f"sqlite:///{tmp_path / 'learning.db'}"
    imported_database(url).dispose()
    settings = learning_settings(tmp_path, task_queue, url)
    config = learning_config(settings, student="sam", curriculum="fractions", max_rounds=2)
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        for _ in range(200):
            code, out = await cli(capsys, "status", handle.id, "--json")
            state = json.loads(out)["state"]
            if state.get("open_test"):
                break
            await asyncio.sleep(0.05)
    assert code == 0 and state["phase"] == "TEST" and state["student"] == "sam"
