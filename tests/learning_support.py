"""Helpers of the learning-loop tests: a database with the fractions curriculum
imported, and a worker running the real activities on it."""

from __future__ import annotations

from pathlib import Path

from activities.curriculum import import_curriculum_file
from activities.learning_db import LearningDatabase
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = ROOT / "curricula" / "fractions.yaml"


def imported_database(url: str, path: Path = FRACTIONS) -> LearningDatabase:
    """A migrated database at ``url`` with the curriculum at ``path`` imported."""
    db = LearningDatabase(url)
    import_curriculum_file(db, path)
    return db


def learning_settings(tmp_path: Path, task_queue: str, url: str) -> Settings:
    """Settings for a worker on ``task_queue`` with the learning database at ``url``."""
    return Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                    database_url=url)
