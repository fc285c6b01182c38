"""Exactly-once messages and bounded activities: breaker updates deduplicated by their
update ID, branch numbers allocated atomically, LLM calls that heartbeat."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.breaker import BreakerActivities
from activities.git import GitActivities
from activities.llm import LlmActivities, OfflineProvider
from models.git import BranchRef, PrepareBranchInput
from models.llm import LlmRequest
from models.workstream import (
    BreakerBoard,
    BreakerPolicy,
    BreakerReport,
    breaker_workflow_id,
)
from tests.conftest import NO_SIGNERS
from tests.workflows.llm_probe import LlmProbeWorkflow, ProbeInput
from tests.workflows.test_sdlc import FakeActivities, gate_open, request, start
from workflows import policies
from workflows.breaker import BreakerWorkflow
from workflows.sdlc import SdlcWorkflow


async def test_a_retried_breaker_report_counts_once(ts_env: WorkflowEnvironment,
                                                    task_queue: str):
    """The same activity (same workflow run and activity ID) reporting twice, as a
    retry after a lost completion does, is one failure; another activity is a second."""
    policy = BreakerPolicy(failure_threshold=5, cool_down_seconds=60)
    report = BreakerReport(tool="t", success=False, holder="wf/step/1", policy=policy)
    env = ActivityEnvironment(client=ts_env.client)
    env.info = dataclasses.replace(env.info, task_queue=task_queue, workflow_id="ws-1",
                                   workflow_run_id="run-1", activity_id="7")
    acts = BreakerActivities()
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[BreakerWorkflow]):
        first = await env.run(acts.report, report)  # starts the breaker workflow
        retried = await env.run(acts.report, report)  # the retry: deduplicated
        assert first.breaker.consecutive_failures == retried.breaker.consecutive_failures == 1
        env.info = dataclasses.replace(env.info, activity_id="8")
        other = await env.run(acts.report, report)
        assert other.breaker.consecutive_failures == 2
        handle = ts_env.client.get_workflow_handle(breaker_workflow_id(task_queue))
        board = await handle.query(BreakerWorkflow.breakers, result_type=BreakerBoard)
        assert board.tools["t"].consecutive_failures == 2
        await handle.terminate()


def test_branch_numbers_are_unique_when_runs_prepare_at_once(git_repo: Path, tmp_path: Path):
    """Eight prepare_branch calls released at the same moment get eight numbers."""
    acts = GitActivities(tmp_path / "worktrees")
    barrier = threading.Barrier(8)
    names: list[str] = []

    def prepare(i: int) -> None:
        barrier.wait()
        ref = ActivityEnvironment().run(acts.prepare_branch, PrepareBranchInput(
            workflow_id=f"wf-{i}", repo_path=str(git_repo), base_branch="main",
            slug=f"feature-{i}"))
        names.append(ref.name)

    threads = [threading.Thread(target=prepare, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(n.split("-", 1)[0] for n in names) == [f"{i:03d}" for i in range(1, 9)]


async def test_two_sdlc_runs_started_at_once_get_different_branch_numbers(
        ts_env: WorkflowEnvironment, task_queue: str, git_repo: Path, tmp_path: Path):
    git = GitActivities(tmp_path / "worktrees")
    fakes = [a for a in FakeActivities().all() if activity._Definition.must_from_callable(
        a).name not in ("prepare_branch", "add_worktree", "remove_worktree")]
    with ThreadPoolExecutor(4) as pool:
        async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                          activities=[NO_SIGNERS, git.prepare_branch, git.add_worktree,
                                      git.remove_worktree, *fakes],
                          activity_executor=pool, max_concurrent_activities=4):
            handles = await asyncio.gather(*(start(ts_env, task_queue, request(
                title=f"Feature {x}", repo_path=str(git_repo))) for x in "ab"))
            await asyncio.gather(*(gate_open(h) for h in handles))
            branches = [(await h.query(SdlcWorkflow.state)).branch for h in handles]
            for h in handles:
                await h.terminate()
    assert all(isinstance(b, BranchRef) for b in branches)
    assert sorted(b.number for b in branches) == [1, 2]


async def test_llm_calls_heartbeat_while_the_call_runs(tmp_path: Path):
    (tmp_path / "judge.md").write_text("---\noffline: 'answer on {topic}'\n---\nJudge {topic}.\n")
    acts = LlmActivities(OfflineProvider(latency=2.6), tmp_path)
    env = ActivityEnvironment()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    response = await env.run(acts.llm_complete, LlmRequest(
        phase="judge", template="judge.md", variables={"topic": "CSV"}))
    assert response.text == "answer on CSV"
    assert len(beats) >= 2  # one a second while the 2.6 s call ran


async def test_llm_activity_is_scheduled_with_a_heartbeat_timeout(
        ts_env: WorkflowEnvironment, task_queue: str, tmp_path: Path):
    (tmp_path / "judge.md").write_text("---\noffline: 'answer on {topic}'\n---\nJudge {topic}.\n")
    acts = LlmActivities(OfflineProvider(), tmp_path)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                      activities=[acts.llm_complete, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            LlmProbeWorkflow.run, ProbeInput(phases=["a"]), id=f"probe-{uuid.uuid4()}",
            task_queue=task_queue)
        await handle.result()
        history = await handle.fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled and all(
        a.heartbeat_timeout.ToTimedelta() == policies.LLM_HEARTBEAT_TIMEOUT
        <= timedelta(seconds=30) for a in scheduled)
