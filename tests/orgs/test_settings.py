"""Org settings (branding) and logo (api.md §5, security.md §8)."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.audit import AdminAuditEvent
from app.orgs.models import OrgSettings
from tests.identity.helpers import ORIGIN, add_member, auth, count, make_org, make_user, signed_in

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'
GIF = b"GIF89a" + b"\x00" * 64
TEXT = b"just some text pretending to be a png"

DOCUMENT = {
    "platform_name": "Best Bakery",
    "primary_color": "#ff8800",
    "secondary_color": "#00aa11",
    "support_email": "Help@Bakery.example",
    "contact_url": "https://bakery.example/contact",
    "business_name": "Bakery Ltd",
    "timezone": "Europe/Paris",
    "enable_signups": False,
    "enable_purchases": True,
}


def settings_url(org) -> str:
    return f"/api/v1/orgs/{getattr(org, 'id', org)}/settings"


def logo_url(org) -> str:
    return f"/api/v1/orgs/{org.id}/settings/logo"


def multipart(fields: dict | list) -> tuple[bytes, str]:
    """Encode in memory (the test client spools big bodies to temp files it never closes)."""
    values = MultiDict()
    for name, value in fields.items() if isinstance(fields, dict) else fields:
        if isinstance(value, tuple):
            data, filename = value
            value = FileStorage(io.BytesIO(data), filename=filename, content_type="image/png")
        values.add(name, value)
    boundary, body = encode_multipart(values)
    return body, f"multipart/form-data; boundary={boundary}"


def put_form(client, org, fields: dict | list, headers):
    body, content_type = multipart(fields)
    return client.put(logo_url(org), data=body, content_type=content_type, headers=headers)


def upload(client, org, data: bytes, headers, filename: str = "logo.png", extra: dict | None = None):
    return put_form(client, org, {"file": (data, filename), **(extra or {})}, headers)


@pytest.fixture()
def org_and_admin(db_session):
    owner = make_user()
    org = make_org(owner, name="Bakery", slug="bakery")
    admin = add_member(org, role="admin")
    return org, admin


# ---- GET ------------------------------------------------------------------------------------


def test_public_get_by_id_and_slug(client, db_session, org_and_admin) -> None:
    org, _ = org_and_admin
    by_id = client.get(settings_url(org))
    by_slug = client.get(settings_url("bakery"))
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json == by_slug.json
    assert by_id.headers["Cache-Control"] == "public, max-age=60"
    assert set(by_id.json) == {
        "organization_id", "organization_slug", "platform_name", "primary_color", "secondary_color",
        "support_email", "contact_url", "business_name", "timezone", "enable_signups", "enable_purchases",
        "logo_url", "updated_at",
    }  # fmt: skip
    assert by_id.json["organization_slug"] == "bakery" and by_id.json["logo_url"] is None


def test_get_unknown_org_is_404(client, db_session) -> None:
    for ident in (uuid.uuid4(), "no-such-org", "x" * 300):
        r = client.get(settings_url(ident))
        assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"


def test_get_is_served_from_the_cache(client, db_session, redis, org_and_admin) -> None:
    org, _ = org_and_admin
    client.get(settings_url(org))
    cached = json.loads(redis.get(f"org_settings:{org.id}"))
    cached["platform_name"] = "From cache"
    redis.set(f"org_settings:{org.id}", json.dumps(cached))
    assert client.get(settings_url(org)).json["platform_name"] == "From cache"


# ---- PUT ------------------------------------------------------------------------------------


def test_put_replaces_settings_with_audit_and_invalidates_cache(client, db_session, redis, org_and_admin) -> None:
    org, admin = org_and_admin
    client.get(settings_url(org))
    assert redis.exists(f"org_settings:{org.id}")
    r = client.put(settings_url(org), json=DOCUMENT, headers=auth(signed_in(admin)))
    assert r.status_code == 200
    body = r.json
    assert body["primary_color"] == "#FF8800" and body["secondary_color"] == "#00AA11"
    assert body["support_email"] == "help@bakery.example" and body["timezone"] == "Europe/Paris"
    assert body["enable_signups"] is False
    assert client.get(settings_url(org)).json == body  # the cache was rebuilt from the new row
    db_session.expire_all()
    row = db_session.get(OrgSettings, org.id)
    assert row.updated_by == admin.id and row.primary_color == "#FF8800"
    (event,) = db_session.scalars(select(AdminAuditEvent)).all()
    assert event.action == "settings.update" and event.actor_role == "admin" and event.target_type == "settings"
    assert event.metadata_["primary_color"] == {"before": "#3B82F6", "after": "#FF8800"}
    assert "support_email" in event.metadata_ and "enable_purchases" not in event.metadata_


def test_put_is_a_replacement_optional_fields_reset(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    client.put(settings_url(org), json=DOCUMENT, headers=headers)
    minimal = {k: DOCUMENT[k] for k in ("platform_name", "primary_color", "support_email", "timezone")}
    body = client.put(settings_url(org), json=minimal, headers=headers).json
    assert body["secondary_color"] is None and body["contact_url"] is None and body["business_name"] is None
    assert body["enable_signups"] is True and body["enable_purchases"] is True


def test_put_unchanged_writes_no_audit(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    client.put(settings_url(org), json=DOCUMENT, headers=headers)
    client.put(settings_url(org), json=DOCUMENT, headers=headers)
    assert count(db_session, AdminAuditEvent) == 1


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"platform_name": ""}, "platform_name"),
        ({"platform_name": "x" * 101}, "platform_name"),
        ({"platform_name": "<script>"}, "platform_name"),
        ({"platform_name": "Bad\x1b"}, "platform_name"),
        ({"primary_color": "#FFF"}, "primary_color"),
        ({"primary_color": "red"}, "primary_color"),
        ({"primary_color": None}, "primary_color"),
        ({"secondary_color": "#12345G"}, "secondary_color"),
        ({"support_email": "nope"}, "support_email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"contact_url": "javascript:alert(1)"}, "contact_url"),
        ({"contact_url": "ftp://bakery.example"}, "contact_url"),
        ({"contact_url": "https://user:pw@bakery.example"}, "contact_url"),
        ({"contact_url": "https://bakery.example/" + "x" * 500}, "contact_url"),
        ({"business_name": "x" * 201}, "business_name"),
        ({"enable_signups": "yes"}, "enable_signups"),
        ({"enable_purchases": 1}, "enable_purchases"),
        ({"logo_key": "orgs/x"}, "logo_key"),
    ],
)
def test_put_bad_input_is_400_and_writes_nothing(client, db_session, org_and_admin, patch, field) -> None:
    org, admin = org_and_admin
    r = client.put(settings_url(org), json={**DOCUMENT, **patch}, headers=auth(signed_in(admin)))
    assert r.status_code == 400 and field in r.json["error"]["details"]
    db_session.expire_all()
    assert db_session.get(OrgSettings, org.id).platform_name == "Bakery"
    assert count(db_session, AdminAuditEvent) == 0


def test_put_missing_required_fields(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    r = client.put(settings_url(org), json={}, headers=auth(signed_in(admin)))
    assert set(r.json["error"]["details"]) == {"platform_name", "primary_color", "support_email", "timezone"}


def test_put_forbidden_for_creator_404_for_outsider(client, db_session, org_and_admin) -> None:
    org, _ = org_and_admin
    creator = add_member(org, role="creator")
    assert client.put(settings_url(org), json=DOCUMENT, headers=auth(signed_in(creator))).status_code == 403
    r = client.put(settings_url(org), json=DOCUMENT, headers=auth(signed_in(make_user())))
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    r = client.put(settings_url("bakery"), json=DOCUMENT, headers=auth(signed_in(make_user())))
    assert r.status_code == 404  # writes need the id; a slug is not a UUID


# ---- logo -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "ext"),
    [(PNG, "image/png", "png"), (JPEG, "image/jpeg", "jpg"), (WEBP, "image/webp", "webp")],
)
def test_upload_logo(client, app, db_session, redis, org_and_admin, recorded_tasks, data, content_type, ext) -> None:
    org, admin = org_and_admin
    client.get(settings_url(org))
    r = upload(client, org, data, auth(signed_in(admin)), filename="anything.svg")
    assert r.status_code == 200
    url = r.json["logo_url"]
    prefix = f"http://localhost:5000/storage/public/orgs/{org.id}/branding/logo-"
    assert url.startswith(prefix) and url.endswith(f".{ext}")
    key = url.removeprefix("http://localhost:5000/storage/public/")
    storage = app.extensions["storage"]
    assert storage.get_bytes(key) == data
    db_session.expire_all()
    assert db_session.get(OrgSettings, org.id).logo_key == key
    assert not redis.exists(f"org_settings:{org.id}")
    assert client.get(settings_url(org)).json["logo_url"] == url
    (event,) = db_session.scalars(select(AdminAuditEvent)).all()
    assert event.action == "settings.logo_update" and event.metadata_["logo_key"] == {"before": None, "after": key}
    assert [name for name, _, _ in recorded_tasks if name == "storage.delete_object"] == []
    storage.delete(key)


def test_replacing_the_logo_deletes_the_old_object_after_commit(
    client, app, db_session, org_and_admin, recorded_tasks
) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    first = upload(client, org, PNG, headers).json["logo_url"].rsplit("/storage/public/", 1)[1]
    second = upload(client, org, JPEG, headers).json["logo_url"].rsplit("/storage/public/", 1)[1]
    assert first != second
    assert ("storage.delete_object", (first,), None) in recorded_tasks
    r = client.delete(logo_url(org), headers=headers)
    assert r.status_code == 204
    assert ("storage.delete_object", (second,), None) in recorded_tasks
    assert client.get(settings_url(org)).json["logo_url"] is None
    actions = [e.action for e in db_session.scalars(select(AdminAuditEvent).order_by(AdminAuditEvent.created_at))]
    assert actions == ["settings.logo_update", "settings.logo_update", "settings.logo_delete"]
    # deleting again: 204, no audit
    assert client.delete(logo_url(org), headers=headers).status_code == 204
    assert count(db_session, AdminAuditEvent) == 3
    for key in (first, second):
        app.extensions["storage"].delete(key)


@pytest.mark.parametrize("data", [SVG, GIF, TEXT, b"", b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_logo_that_is_not_png_jpeg_webp_is_415(client, app, db_session, org_and_admin, storage_root, data) -> None:
    org, admin = org_and_admin
    r = upload(client, org, data, auth(signed_in(admin)), filename="logo.png")
    assert r.status_code == 415 and r.json["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert not (storage_root / "orgs" / str(org.id)).exists()
    assert count(db_session, AdminAuditEvent) == 0


def test_oversized_logo_is_413(client, db_session, org_and_admin, storage_root) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    just_over = PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG) + 1)  # file > 5 MiB, request < 5 MiB + 64 KiB
    r = upload(client, org, just_over, headers)
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    r = upload(client, org, PNG + b"\x00" * (6 * 1024 * 1024), headers)  # request over the route limit
    assert r.status_code == 413
    assert not (storage_root / "orgs" / str(org.id)).exists()
    exactly = PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG))
    assert upload(client, org, exactly, headers).status_code == 200


def test_logo_form_errors_are_400(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    r = put_form(client, org, {"other": "x"}, headers)
    assert r.status_code == 400 and set(r.json["error"]["details"]) >= {"other"}
    r = put_form(client, org, {}, headers)
    assert r.status_code == 400 and "file" in r.json["error"]["details"]
    r = upload(client, org, PNG, headers, extra={"name": "x"})
    assert r.status_code == 400 and "name" in r.json["error"]["details"]
    r = put_form(client, org, {"file": (PNG, "a.png"), "logo": (PNG, "b.png")}, headers)
    assert r.status_code == 400 and "logo" in r.json["error"]["details"]
    r = put_form(client, org, {"file": "not a file"}, headers)
    assert r.status_code == 400
    r = put_form(client, org, [("file", (PNG, "a.png")), ("file", (PNG, "b.png"))], headers)
    assert r.status_code == 400 and "file" in r.json["error"]["details"]
    assert count(db_session, AdminAuditEvent) == 0


def test_logo_not_multipart_is_415_before_auth(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    r = client.put(logo_url(org), data=PNG, content_type="image/png", headers=auth(signed_in(admin)))
    assert r.status_code == 415
    r = client.put(logo_url(org), json={"file": "x"})
    assert r.status_code == 415  # Content-Type is checked before authentication (README §3.4)
    r = client.put(logo_url(org), data=b"x" * (6 * 1024 * 1024), content_type="image/png")
    assert r.status_code == 413


def test_logo_access(client, db_session, org_and_admin) -> None:
    org, _ = org_and_admin
    creator = add_member(org, role="creator")
    assert upload(client, org, PNG, {}).status_code == 401
    assert upload(client, org, PNG, auth(signed_in(creator))).status_code == 403
    r = upload(client, org, PNG, auth(signed_in(make_user())))
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    assert client.delete(logo_url(org), headers=auth(signed_in(creator))).status_code == 403


def test_logo_upload_with_cookie_needs_a_trusted_origin(client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    client.set_cookie("codex_session", signed_in(admin))
    r = upload(client, org, PNG, {"Origin": "https://evil.example"})
    assert r.status_code == 403 and r.json["error"]["code"] == "CSRF_FAILED"
    r = upload(client, org, PNG, {"Origin": ORIGIN})
    assert r.status_code == 200


def test_upload_rate_limited_per_user(limited_client, db_session, org_and_admin) -> None:
    org, admin = org_and_admin
    headers = auth(signed_in(admin))
    for _ in range(30):
        r = upload(limited_client, org, b"not an image", headers)
        assert r.status_code == 415
    r = upload(limited_client, org, PNG, headers)
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_email_branding_follows_settings_writes(client, app, db_session, org_and_admin) -> None:
    from app.orgs.branding import branding_for

    org, admin = org_and_admin
    with app.app_context():
        assert branding_for(db_session, org.id).platform_name == "Bakery"  # now cached
    client.put(settings_url(org), json=DOCUMENT, headers=auth(signed_in(admin)))
    upload(client, org, PNG, auth(signed_in(admin)))
    with app.app_context():
        branding = branding_for(db_session, org.id)
    assert branding.platform_name == "Best Bakery" and branding.primary_color == "#FF8800"
    assert branding.timezone == "Europe/Paris" and branding.logo_url.endswith(".png")
    app.extensions["storage"].delete(branding.logo_url.split("/storage/public/", 1)[1])
