"""call tickets: the caller's token names its call by an opaque id; platform API keys

Revision ID: 0004
Revises: 0003_sec
Create Date: 2026-12-01 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003_sec'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'call_tickets',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('session_id', sa.String(length=36), nullable=False),
        sa.Column('avatar_id', sa.String(length=36), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['avatar_id'], ['avatars.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id'),
    )
    with op.batch_alter_table('call_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_tickets_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_tickets_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_tickets_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_call_tickets_expires_at'))
    op.drop_table('call_tickets')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('platform')
