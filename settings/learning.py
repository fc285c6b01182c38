"""Settings of the learning loop and its database."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from settings.core import CoreSettings


class LearningSettings(CoreSettings):
    """DATABASE_URL, mastery threshold, rounds, test size and timing, grading."""

    database_url: str = Field(
        "", description="SQLAlchemy URL of the learning database (unset: SQLite file "
        "learning.db under ORCHESTRATOR_HOME; PostgreSQL: postgresql+psycopg://...)")
    learning_mastery_threshold: float = Field(
        0.95, gt=0, le=1, description="P(L) at which a knowledge component counts as mastered")
    learning_max_rounds: int = Field(
        30, ge=1, description="rounds (one test each) before a learning loop ends ROUND_LIMIT")
    learning_items_per_test: int = Field(3, ge=1, le=20, description="items per test")
    learning_test_reminder: timedelta = Field(
        timedelta(days=1), description="a reminder is recorded this often while a test is open")
    learning_test_expiry: timedelta = Field(
        timedelta(days=7), description="an open test expires after this long (not attempted)")
    learning_on_expiry: Literal["continue", "pause"] = Field(
        "continue", description="after an expired test: go on with the next round, or pause")
    learning_llm_grading: bool = Field(
        False, description="grade free-text answers with the LLM (else exact match)")

    @property
    def learning_database_url(self) -> str:
        """DATABASE_URL, or the SQLite file ``learning.db`` under ORCHESTRATOR_HOME."""
        return self.database_url or (
            f"sqlite:///{(self.orchestrator_home / 'learning.db').resolve()}")
