"""Alembic revisions of the learning database, oldest first."""
