"""Alembic environment: runs on the connection ``activities.learning_db.upgrade`` passes.

To write a new revision after changing ``activities/learning_db.py``::

    python -c "from activities.learning_db import new_revision; new_revision('what changed')"

and check it with ``tests/unit/test_learning_db.py`` (schema matches the models).
"""

from alembic import context

from activities.learning_db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
