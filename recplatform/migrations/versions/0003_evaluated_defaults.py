"""retrieval defaults set by the ML-100K evaluation (docs/results.md).

Revision ID: 0003
Revises: 0002

Cold-user protocol, 5 user-disjoint folds, full ranking: demographic-neighbour voting with a popularity prior of
0.3 measured the best NDCG@10 (0.3933; popularity 0.3748, segment popularity 0.3922), and the best NDCG@5.
Warm: collaborative taste with no content blend and no prior stays (0.1752 = 0.989x EASE; a content blend
only lowered it). Only the cold prior changes, and only where an operator has not picked another strategy;
the notes record where the values come from.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


_SET = sa.text("""
UPDATE rec.retrieval_defaults
   SET popularity_weight = CASE user_type WHEN 'cold' THEN :cold_weight ELSE popularity_weight END,
       note = CASE user_type WHEN 'cold' THEN :cold_note ELSE :warm_note END,
       updated_at = now()
 WHERE (user_type = 'cold' AND strategy = 'neighbors_vote') OR (user_type = 'warm' AND strategy = 'taste')
""").bindparams(sa.bindparam("cold_weight", type_=sa.Float), sa.bindparam("cold_note", type_=sa.Text),
                sa.bindparam("warm_note", type_=sa.Text))


def upgrade() -> None:
    op.execute(_SET.bindparams(cold_weight=0.3,
                               cold_note="ML-100K cold-user evaluation (docs/results.md): best NDCG@10 0.3933",
                               warm_note="ML-100K warm evaluation (docs/results.md): taste 0.1752 = 0.989x EASE"))


def downgrade() -> None:
    op.execute(_SET.bindparams(cold_weight=0.1,
                               cold_note="initial default from the issue 4 prototype; evaluation may change it",
                               warm_note="initial default: collaborative taste vector (MF fold-in)"))
