"""The simulated student of ``demo --learning``, the learning-loop benchmark and the
tests: answers each open test of a loop, right with a given probability."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from activities.artifacts import ArtifactStore
from activities.learning_db import LearningDatabase
from activities.learning_repo import LearningRepository
from models.learning import Answer, OpenTest, SubmitAnswers
from workflows.learning_loop import LearningLoopWorkflow

# A query that reaches the loop while it continues as new waits for that workflow
# task: on the dev server up to about a second (measured under load), on the
# time-skipping test server until the query's deadline (its own limit is 30 s).
# The student asks again after a miss, so a deadline above the dev server's wait
# and well below the CLI's QUERY_TIMEOUT keeps such a miss short.
POLL_QUERY_TIMEOUT = timedelta(seconds=2)


class SimulatedStudent:
    """Answers each open test of a loop: right with probability ``p``, else one of
    the item's known wrong answers. Used by the demo, the tests and the benchmark.

    Args:
        handle: the loop (a handle without run ID follows continue-as-new).
        database_url: the learning database, to look up answer keys.
        p: probability of a right answer, in [0, 1].
        seed: seed of the random choices (same seed, same answers).
        name: who answers; empty = the run's student (the workflow refuses anyone
            else but a teacher).
    """

    def __init__(self, handle: WorkflowHandle[Any, Any], database_url: str, p: float,
                 seed: int = 0, name: str = "") -> None:
        self.handle = handle
        self.repo = LearningRepository(LearningDatabase(database_url), ArtifactStore(Path(".")))
        self.p = p
        self.rng = random.Random(seed)
        self.name = name
        self.tests = 0

    def answers(self, test: OpenTest, curriculum: str) -> list[Answer]:
        """An answer for every item of ``test``."""
        out = []
        for item in test.items:
            key, wrong = self.repo.answer_key(curriculum, item.id)
            right = self.rng.random() < self.p
            out.append(Answer(item=item.id, answer=key if right else self.rng.choice(wrong)))
        return out

    async def answer_open_test(self, curriculum: str) -> bool:
        """Answer the open test, if one is open; True when it answered one."""
        test = await self.handle.query(LearningLoopWorkflow.open_test,
                                       rpc_timeout=POLL_QUERY_TIMEOUT)
        if test is None:
            return False
        answers = await asyncio.to_thread(self.answers, test, curriculum)
        await self.handle.execute_update(LearningLoopWorkflow.submit_answers, SubmitAnswers(
            test_id=test.test_id, answers=answers, student=self.name))
        self.tests += 1
        return True

    async def run(self, curriculum: str, poll: float = 0.02, max_tests: int | None = None
                  ) -> int:
        """Answer tests until the loop closes (or ``max_tests``); returns tests answered."""
        while max_tests is None or self.tests < max_tests:
            desc = await self.handle.describe()
            if desc.status not in (WorkflowExecutionStatus.RUNNING,
                                   WorkflowExecutionStatus.CONTINUED_AS_NEW):
                break
            try:
                answered = await self.answer_open_test(curriculum)
            except Exception:  # noqa: BLE001 - between runs (continue-as-new) or closing
                answered = False
            if not answered:
                await asyncio.sleep(poll)
        return self.tests
