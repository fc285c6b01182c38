"""LearningLoopWorkflow on the time-skipping server with the real database
activities (SQLite) and the offline LLM provider."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from cli.learning import SimulatedStudent, learning_config, start_learning
from models.common import AuditEntry
from models.learning import (
    Answer,
    LearningPhase,
    LearningProgress,
    LearningResult,
    OpenTest,
    OverrideAck,
    PauseResume,
    SetMastery,
    SkipKc,
    SubmitAck,
    SubmitAnswers,
)
from tests.learning_support import imported_database, learning_settings
from worker import make_worker
from workflows.learning_loop import SUBMIT_ANSWERS


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'learning.db'}"
    imported_database(url).dispose()
    return url


def student() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


async def wait_for_test(handle, previous: str | None = None) -> OpenTest:
    for _ in range(400):
        try:
            test = await handle.query("open_test", result_type=OpenTest | None)
        except Exception:  # noqa: BLE001 - between runs
            test = None
        if test is not None and test.test_id != previous:
            return test
        await asyncio.sleep(0.02)
    raise AssertionError("no test opened")


async def test_able_student_reaches_mastery(ts_env, task_queue, tmp_path, db_url):
    settings = learning_settings(tmp_path, task_queue, db_url)
    config = learning_config(settings, student=student(), curriculum="fractions",
                             max_rounds=40)
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        sim = SimulatedStudent(ts_env.client.get_workflow_handle(handle.id), db_url, p=0.95,
                               seed=1)
        await sim.run("fractions")
        result = LearningResult.model_validate(await handle.result())
    assert result.outcome == LearningPhase.MASTERED
    assert all(kc.mastered for kc in result.kcs)
    assert result.rounds == sim.tests <= 40
    assert result.items == sum(kc.items for kc in result.kcs) > 0
