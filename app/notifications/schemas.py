"""marshmallow schemas of the org email log (``GET /api/v1/orgs/{org_id}/emails``)."""

from __future__ import annotations

import marshmallow as ma

from app.notifications.models import STATUSES, TEMPLATES
from app.schemas import PageArgsSchema, Timestamp


class OutboxEmailSchema(ma.Schema):
    """One outbox row as org admins see it (no context: it may hold links meant for the recipient)."""

    id = ma.fields.UUID(required=True)
    template = ma.fields.String(required=True)
    recipient = ma.fields.String(required=True)
    user_id = ma.fields.UUID(allow_none=True)
    status = ma.fields.String(required=True)
    attempts = ma.fields.Integer(required=True)
    last_error = ma.fields.String(allow_none=True)
    subject = ma.fields.String(allow_none=True)
    created_at = Timestamp(required=True)
    sent_at = Timestamp(allow_none=True)


class EmailListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES), load_default=None)
    template = ma.fields.String(validate=ma.validate.OneOf(TEMPLATES), load_default=None)
