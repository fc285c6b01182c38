"""Issue 7 on the dev server: recovery after kill -9 of a worker, and the
local-activity table of workflows/policies.py deciding how steps run."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench import engine
from settings import Settings
from worker import build_activities
from workflows import policies


async def test_killed_worker_is_replaced_without_rerunning_finished_steps(dev_env):
    """kill -9 in the middle of step 2 of 4; a new worker process finishes the run.
    Steps 0 and 1 had finished and must not run again; the bound on the time to
    the next step is generous for CI (the figure itself is bench/run_all's)."""
    result = await engine.recovery(dev_env.client, f"tq-{uuid.uuid4()}", tuned=True, runs=1,
                                   steps=4, kill_in_step=2)
    assert result["finished_steps_rerun"] == [0]
    assert result["restart_to_next_step_s_max"] < 30


@activity.defn(name="test_probe_local")
async def probe_local(x: int) -> int:
    return x + 1


@activity.defn(name="prepare_branch")
async def probe_never_local(x: int) -> int:
    return x + 2


@workflow.defn(name="TestStepPolicyWorkflow")
class StepPolicyWorkflow:
    @workflow.run
    async def run(self, x: int) -> int:
        a = await policies.execute_step(probe_local, x, start_to_close_timeout=timedelta(
            seconds=30))
        return await policies.execute_step(probe_never_local, a,
                                           start_to_close_timeout=timedelta(seconds=30))


async def test_the_local_activity_table_decides_how_a_step_runs(dev_env, task_queue,
                                                                monkeypatch):
    """A step listed in LOCAL_ACTIVITIES runs local (a marker in history, no
    activity task); one listed in NEVER_LOCAL runs as a normal activity even when
    someone also lists it as local."""
    monkeypatch.setitem(policies.LOCAL_ACTIVITIES, "test_probe_local", "test: pure arithmetic")
    monkeypatch.setitem(policies.LOCAL_ACTIVITIES, "prepare_branch", "wrongly listed")
    # Unsandboxed, so the workflow sees this process's patched table.
    async with Worker(dev_env.client, task_queue=task_queue, workflows=[StepPolicyWorkflow],
                      activities=[probe_local, probe_never_local],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await dev_env.client.start_workflow(
            StepPolicyWorkflow.run, 1, id=f"policy-{uuid.uuid4()}", task_queue=task_queue)
        assert await handle.result() == 4
        events = [e async for e in handle.fetch_history_events()]
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    markers = [e for e in events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert scheduled == ["prepare_branch"]
    assert len(markers) == 1


def test_local_table_lists_only_registered_steps_and_none_that_must_stay_remote(tmp_path):
    names = {activity._Definition.must_from_callable(fn).name
             for fn in build_activities(Settings(orchestrator_home=tmp_path))}
    assert set(policies.LOCAL_ACTIVITIES) <= names
    assert not set(policies.LOCAL_ACTIVITIES) & set(policies.NEVER_LOCAL)
    assert {"prepare_branch", "add_worktree", "open_issue", "run_agent"} <= set(
        policies.NEVER_LOCAL)
