"""invitations

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00

Staff join an organization only by accepting an invitation with a verified email (api.md §4):
the ``invitations`` table, the ``org-invitation`` email template and the ``invitation.create`` /
``invitation.revoke`` audit actions (the outbox and audit CHECKs list their allowed values).

Downgrade restores the narrower CHECKs as ``NOT VALID``: rows written meanwhile (invitation
emails, invitation audit events) stay as history instead of blocking the downgrade or being
deleted, and new ones are refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEMPLATES_BEFORE = (
    "email-verification",
    "password-reset",
    "password-changed",
    "welcome",
    "purchase-receipt",
    "refund-processed",
    "access-granted",
    "media-ready",
    "media-failed",
    "new-sale",
)
TEMPLATES_AFTER = (*TEMPLATES_BEFORE, "org-invitation")

ACTIONS_BEFORE = (
    "org.update",
    "member.add",
    "member.role_change",
    "member.remove",
    "ownership.transfer",
    "settings.update",
    "settings.logo_update",
    "settings.logo_delete",
    "grant.create",
    "grant.revoke",
    "refund.request",
    "refund.auto_duplicate",
)
ACTIONS_AFTER = (*ACTIONS_BEFORE, "invitation.create", "invitation.revoke")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _replace_check(table: str, name: str, condition: str, *, not_valid: bool = False) -> None:
    # Plain SQL: the names are final (no naming convention applied), one statement, one lock.
    suffix = " NOT VALID" if not_valid else ""
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} CHECK ({condition}){suffix}")


def upgrade() -> None:
    op.create_table(
        "invitations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("invited_by", sa.UUID(), nullable=False),
        sa.Column("accepted_by", sa.UUID(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'creator')", name=op.f("ck_invitations_role")),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'revoked')", name=op.f("ck_invitations_status")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_invitations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"], ["users.id"], name=op.f("fk_invitations_invited_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["accepted_by"], ["users.id"], name=op.f("fk_invitations_accepted_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitations_token_hash")),
    )
    op.create_index(
        "ux_invitations_pending",
        "invitations",
        ["organization_id", "email"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_invitations_org_created",
        "invitations",
        ["organization_id", sa.literal_column("created_at DESC")],
        unique=False,
    )
    _replace_check("email_outbox", "ck_email_outbox_template", f"template IN ({_in(TEMPLATES_AFTER)})")
    _replace_check("admin_audit_events", "ck_admin_audit_events_action", f"action IN ({_in(ACTIONS_AFTER)})")


def downgrade() -> None:
    _replace_check(
        "admin_audit_events", "ck_admin_audit_events_action", f"action IN ({_in(ACTIONS_BEFORE)})", not_valid=True
    )
    _replace_check("email_outbox", "ck_email_outbox_template", f"template IN ({_in(TEMPLATES_BEFORE)})", not_valid=True)
    op.drop_index("ix_invitations_org_created", table_name="invitations")
    op.drop_index("ux_invitations_pending", table_name="invitations")
    op.drop_table("invitations")
