"""Cancelling an analysis while an LLM call runs ends CANCELED, not FAILED, even where
the workflow falls back on a failed call (time-skipping server)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.worker import Worker

from activities.analysis import AnalysisActivities
from activities.artifacts import ArtifactStore
from models.analysis import AnalysisPhase, AnalysisState
from tests.conftest import NO_SIGNERS, hanging_llm_complete
from tests.workflows.analysis_harness import analysis_request, workflow_id
from workflows.analysis import AnalysisWorkflow


async def test_cancel_during_an_llm_call_ends_the_analysis_canceled(private_ts_env, task_queue,
                                                                    tmp_path: Path):
    calls: list[str] = []
    acts = AnalysisActivities(ArtifactStore(tmp_path / "artifacts"))
    async with Worker(private_ts_env.client, task_queue=task_queue, workflows=[AnalysisWorkflow],
                      activities=[hanging_llm_complete(calls), *acts.activities(), NO_SIGNERS],
                      activity_executor=ThreadPoolExecutor(2)):
        handle = await private_ts_env.client.start_workflow(
            AnalysisWorkflow.run, analysis_request(), id=workflow_id(), task_queue=task_queue)
        for _ in range(400):
            if calls:
                break
            await asyncio.sleep(0.05)
        assert calls, "no LLM call started"
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        state = await handle.query("state", result_type=AnalysisState)
    assert state.phase == AnalysisPhase.CANCELED and state.failure_reason == "canceled"
