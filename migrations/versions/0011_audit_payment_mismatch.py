"""audit action payment.mismatch

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00

A paid checkout session whose amount or currency differs from the session this app created is
refused and audited in the content's org as ``payment.mismatch`` (security.md §9): the action
joins the ``ck_admin_audit_events_action`` list. Existing rows all satisfy the wider check.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "org.update",
    "member.add",
    "member.role_change",
    "member.remove",
    "ownership.transfer",
    "invitation.create",
    "invitation.revoke",
    "settings.update",
    "settings.logo_update",
    "settings.logo_delete",
    "grant.create",
    "grant.revoke",
    "refund.request",
    "refund.auto_duplicate",
)
AFTER = (*BEFORE, "payment.mismatch")


def _check(actions: tuple[str, ...], *, validate: bool) -> None:
    listed = ", ".join(f"'{action}'" for action in actions)
    op.execute("ALTER TABLE admin_audit_events DROP CONSTRAINT ck_admin_audit_events_action")
    op.execute(
        "ALTER TABLE admin_audit_events ADD CONSTRAINT ck_admin_audit_events_action "
        f"CHECK (action IN ({listed})){'' if validate else ' NOT VALID'}"
    )


def upgrade() -> None:
    _check(AFTER, validate=True)


def downgrade() -> None:
    # The audit trail is append-only: rows already written stay (NOT VALID); new ones are refused.
    _check(BEFORE, validate=False)
