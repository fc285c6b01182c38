"""item templates of a KC and accepted alternatives of an item

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("knowledge_components") as batch:
        batch.add_column(sa.Column("item_templates", sa.JSON(), nullable=False,
                                   server_default="[]"))
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("alternatives", sa.JSON(), nullable=False,
                                   server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("alternatives")
    with op.batch_alter_table("knowledge_components") as batch:
        batch.drop_column("item_templates")
