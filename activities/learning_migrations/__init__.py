"""Alembic migrations of the learning database (run by ``activities.learning_db.upgrade``)."""
