"""taste vectors carry a version: the newest interaction id of the history they were folded in from.

Revision ID: 0005
Revises: 0004

A fold-in writes a taste vector only over one of the same or an older version, so an older vector never
overwrites a newer one; reconcile finds tastes older than their user's newest interaction. NULL for demographic
vectors and for tastes written before this revision (those count as stale and are refreshed once).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_embeddings", sa.Column("version", sa.BigInteger(), nullable=True), schema="rec")


def downgrade() -> None:
    op.drop_column("user_embeddings", "version", schema="rec")
