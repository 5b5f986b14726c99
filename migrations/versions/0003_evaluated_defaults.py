"""retrieval defaults set by the ML-100K evaluation (docs/results.md).

Revision ID: 0003
Revises: 0002

Cold-user protocol, 5 user-disjoint folds, full ranking: demographic-neighbour voting with a popularity prior of
0.3 measured the best NDCG@10 (0.3933; popularity 0.3748, segment popularity 0.3922), and the best NDCG@5.
Warm: collaborative taste with no content blend and no prior stays (0.1752 = 0.989x EASE; a content blend
only lowered it). Only the cold row changes.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        UPDATE rec.retrieval_defaults
           SET strategy = 'neighbors_vote', popularity_weight = 0.3, updated_at = now(),
               note = 'ML-100K cold-user evaluation (docs/results.md): best NDCG@10 0.3933'
         WHERE user_type = 'cold'
    """)
    op.execute("""
        UPDATE rec.retrieval_defaults
           SET note = 'ML-100K warm evaluation (docs/results.md): taste 0.1752 = 0.989x EASE; content blend lowers it',
               updated_at = now()
         WHERE user_type = 'warm' AND strategy = 'taste' AND content_weight = 0
    """)


def downgrade() -> None:
    op.execute("""
        UPDATE rec.retrieval_defaults
           SET strategy = 'neighbors_vote', popularity_weight = 0.1, updated_at = now(),
               note = 'initial default from the issue 4 prototype; evaluation may change it'
         WHERE user_type = 'cold'
    """)
    op.execute("""
        UPDATE rec.retrieval_defaults
           SET note = 'initial default: collaborative taste vector (MF fold-in)', updated_at = now()
         WHERE user_type = 'warm'
    """)
