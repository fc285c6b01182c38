"""A GitHub gate open for 7 simulated days on the time-skipping server, with the real
worker, the real GitHub tracker (PyGithub against the local GitHub server), real git
and the offline agent: comments arrive over the week, the comment watch polls every
two hours without adding history, the run continues as new whenever its history reaches
its budget, and the gate still decides correctly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from cli.sdlc import feature_request, start_sdlc
from models.sdlc import SdlcPhase, SdlcResult, SdlcState
from settings import Settings
from temporal_plumbing.environments import start_time_skipping_env
from tests.conftest import git
from tests.github_server import GitHubServer
from worker import make_worker

TEMPORAL_WARNS_AT = 10_240  # events: Temporal's history-length warning
BUDGET = 150  # this test's history budget per run (the default is 5,000)


@pytest_asyncio.fixture
async def own_ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own: skipping 7 days must not move other tests'."""
    env = await start_time_skipping_env()
    try:
        yield env
    finally:
        await env.shutdown()


async def runs_of(env: WorkflowEnvironment, handle: WorkflowHandle) -> list[list]:
    """The events of every run of the workflow, first run first (following each
    run's continued-as-new event)."""
    runs, run_id = [], handle.first_execution_run_id
    while run_id:
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append(history.events)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes
                  .new_execution_run_id if last.event_type ==
                  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW else "")
    return runs


async def gate_round(handle: WorkflowHandle, round_number: int) -> None:
    for _ in range(400):
        state = await handle.query("state", result_type=SdlcState)
        if state.round == round_number and state.pending_gates:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"GATE_1 of round {round_number} never opened")


async def test_a_github_gate_open_for_seven_days_stays_bounded_and_decides(
        own_ts_env: WorkflowEnvironment, git_repo: Path, tmp_path: Path):
    env = own_ts_env
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(git_repo, "remote", "add", "origin", str(bare))
    git(git_repo, "push", "-q", "origin", "main")
    with GitHubServer() as server:
        gh = server.gh
        gh.permissions.update({"alice": "write", "mallory": "read"})
        settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue="week",
                            github_token=gh.token, github_repository=gh.full_name,
                            github_api_url=server.api_url)
        req = feature_request(settings, title="Add CSV export", description="Export as CSV.",
                              repo_path=str(git_repo), comment_poll_interval=timedelta(hours=2),
                              comment_watch_window=timedelta(0),
                              reminder_interval=timedelta(hours=24), history_budget=BUDGET)

        async def now() -> datetime:
            return await env.get_current_time()

        async def day(comment: tuple[str, str] | None = None) -> None:
            for _ in range(4):  # in steps: one sleep call has an RPC deadline
                await env.sleep(timedelta(hours=6))
            if comment:
                gh.add_comment(1, comment[0], comment[1], at=await now())

        async with make_worker(env.client, settings):
            handle = await start_sdlc(env.client, settings, req)
            await gate_round(handle, 1)
            await day(("alice", "Looks promising, reading it this week."))  # day 1
            gh.delete_label("sdlc:gate-1")  # a person deletes the phase label
            await day(("mallory", "/approve"))  # day 2: no permission, answered by the watch
            await day(("alice", "/reject"))  # day 3: no reason: refused by the workflow
            # a reminder since re-applied the label, made again with its colour
            assert gh.issue_labels(1) == ["sdlc:gate-1"]
            assert gh.labels["sdlc:gate-1"]["color"] == "fbca04"
            await day(("alice", "/revise name the columns and the encoding"))  # day 4
            await gate_round(handle, 2)
            await day()  # day 5: nothing
            await day(("alice", "/approve"))  # day 6
            result = SdlcResult.model_validate(await handle.result())
            runs = await runs_of(env, handle)

    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert result.pr_url
    # bounded: the run continued as new, and no run came near Temporal's warning
    assert len(runs) >= 2
    assert all(len(events) < TEMPORAL_WARNS_AT for events in runs)
    assert all(len(events) <= BUDGET + 40 for events in runs[:-1])
    # the gate decided correctly across the runs (the audit log is carried)
    decisions = [(e.actor, e.detail) for e in result.audit if e.kind == "decision"]
    assert [(a, d.split(" (via")[0]) for a, d in decisions] == [
        ("github:alice", "GATE_1: revise"), ("github:alice", "GATE_1: approve")]
    refused = [e for e in result.audit if e.kind == "refused"]
    assert [e.actor for e in refused] == ["github:alice"] and "needs a comment" in refused[0].detail
    assert sum(e.kind == "continued_as_new" for e in result.audit) == len(runs) - 1
    assert sum(e.kind == "reminder" for e in result.audit) >= 4
    bodies = [c["body"] for c in gh.comments_on(1)]
    assert any(b.startswith("@mallory") and "permission" in b for b in bodies)
    # each reply once, though runs continued as new around them
    assert sum(b.startswith("@alice") and "needs a comment" in b for b in bodies) == 1
    assert sum(b.startswith("@mallory") for b in bodies) == 1
    # polling cost no history: ~75 polls every 2 hours, a handful of watch activities
    polls = gh.count("GET", "/issues/1/comments")
    watches = sum(1 for events in runs for e in events
                  if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and
                  e.activity_task_scheduled_event_attributes.activity_type.name
                  == "watch_issue_comments")
    assert polls >= 6 * 12 and watches <= 12
