"""The learning loop's database activities: :class:`LearningStore`.

Every database call of LearningLoopWorkflow is one of these activities. They
are sync (SQLAlchemy is blocking) and run on the worker's thread pool; the SQL
lives in :mod:`activities.learning_repo`, imported when the store is built, so
that the workflow module (which names these methods) never imports SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.learning import (
    BeginInput,
    CloseTestInput,
    Diagnosis,
    FreeTextRubric,
    KcState,
    MasteryInput,
    MasteryUpdate,
    OpenTestInput,
    PickedItems,
    PickItemsInput,
    RemediateInput,
    RemediationRef,
    SetMasteryInput,
    StoredGenerated,
    StoreGeneratedInput,
    TemplateItemsInput,
)

T = TypeVar("T")


def _permanent(fn: Callable[..., T]) -> Callable[..., T]:
    """A missing curriculum, KC, test or student will not appear on a retry: raise
    it as a non-retryable ApplicationError with the message that says what to do."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except LookupError as err:
            raise ApplicationError(str(err).strip("'\""), type="LearningDataMissing",
                                   non_retryable=True) from None

    return wrapper


class LearningStore:
    """Activities over the learning database.

    Args:
        database_url: SQLAlchemy URL (``DATABASE_URL``); the schema is migrated on first use.
        artifact_root: the artifact store's directory (remediation files go there).
    """

    def __init__(self, database_url: str, artifact_root: Path) -> None:
        from activities.artifacts import ArtifactStore
        from activities.learning_db import LearningDatabase
        from activities.learning_repo import LearningRepository

        self.repo = LearningRepository(LearningDatabase(database_url),
                                       ArtifactStore(artifact_root))

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of the store, for the worker."""
        return [self.begin, self.pick_items, self.store_generated, self.store_template_items,
                self.open_test, self.cancel_test,
                self.rubrics, self.close_test, self.remediate, self.update_mastery,
                self.set_mastery]

    @activity.defn(name="learning_begin")
    @_permanent
    def begin(self, inp: BeginInput) -> list[KcState]:
        """Register the student; every KC of the curriculum with its P(L)."""
        return self.repo.begin(inp)

    @activity.defn(name="learning_pick_items")
    @_permanent
    def pick_items(self, inp: PickItemsInput) -> PickedItems:
        """Items for a test from the bank, unseen first, and the shortfall."""
        return self.repo.pick_items(inp)

    @activity.defn(name="learning_store_generated")
    @_permanent
    def store_generated(self, inp: StoreGeneratedInput) -> StoredGenerated:
        """Validate LLM-generated items and add the valid ones to the bank."""
        return self.repo.store_generated(inp)

    @activity.defn(name="learning_store_template_items")
    @_permanent
    def store_template_items(self, inp: TemplateItemsInput) -> StoredGenerated:
        """Draw items from the KC's item templates for one student and round, check
        them and add the valid ones to the bank."""
        return self.repo.store_template_items(inp)

    @activity.defn(name="learning_open_test")
    @_permanent
    def open_test(self, inp: OpenTestInput) -> None:
        """Record the test assigned to the student."""
        self.repo.open_test(inp)

    @activity.defn(name="learning_cancel_test")
    def cancel_test(self, test_id: str) -> bool:
        """Close a cancelled loop's open test as ``canceled`` (True), or nothing when it
        is closed already or was never written (False)."""
        return self.repo.cancel_test(test_id)

    @activity.defn(name="learning_rubrics")
    @_permanent
    def rubrics(self, test_id: str) -> list[FreeTextRubric]:
        """Answer keys of a test's free-text items, for the LLM grader."""
        return self.repo.rubrics(test_id)

    @activity.defn(name="learning_close_test")
    @_permanent
    def close_test(self, inp: CloseTestInput) -> Diagnosis:
        """Diagnose: score and store the responses, name misconceptions, close the test."""
        return self.repo.close_test(inp)

    @activity.defn(name="learning_remediate")
    @_permanent
    def remediate(self, inp: RemediateInput) -> RemediationRef:
        """Remediate: write the hint, worked example and practice items artifact."""
        return self.repo.remediate(inp)

    @activity.defn(name="learning_update_mastery")
    @_permanent
    def update_mastery(self, inp: MasteryInput) -> MasteryUpdate:
        """Model: BKT per response, once per response ID."""
        return self.repo.update_mastery(inp)

    @activity.defn(name="learning_set_mastery")
    @_permanent
    def set_mastery(self, inp: SetMasteryInput) -> float:
        """A teacher's mastery override, once per step."""
        return self.repo.set_mastery(inp)
