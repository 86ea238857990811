"""Content management (api.md §7): create, list, get, patch, delete, publish/unpublish/archive."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.content.models import Content
from tests.content.helpers import Staff, caller, make_content, make_media, make_staff


@pytest.fixture()
def staff(db_session: Session) -> Staff:
    return make_staff()


def content_url(org_id: Any) -> str:
    return f"/api/v1/orgs/{org_id}/content"


def count_content(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Content)) or 0


def create(client: FlaskClient, staff: Staff, who: str = "creator", **body: Any) -> Any:
    body.setdefault("content_type", "video")
    body.setdefault("title", "Knife Skills")
    if "media_id" not in body:
        media_type = body["content_type"] if body["content_type"] in ("video", "audio") else "video"
        body["media_id"] = str(make_media(staff.org.id, getattr(staff, who).id, media_type=media_type).id)
    return client.post(content_url(staff.org.id), json=body, headers=getattr(staff, who).headers)


# ---- create -----------------------------------------------------------------------------------


def test_create_defaults(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    r = create(client, staff, price_cents=1999, tags=["Knife", "basics", "knife"])
    assert r.status_code == 201, r.json
    body = r.json
    assert set(body) == {
        "id", "organization_id", "created_by", "media_id", "title", "slug", "description", "content_type",
        "visibility", "price_cents", "currency", "is_free", "category", "tags", "status", "published_at",
        "archived_at", "media_status", "duration_seconds", "thumbnail_url", "created_at", "updated_at",
    }  # fmt: skip
    assert (body["slug"], body["status"], body["visibility"], body["currency"], body["is_free"]) == (
        "knife-skills",
        "draft",
        "purchased_only",
        "usd",
        False,
    )
    assert body["tags"] == ["knife", "basics"] and body["media_status"] == "ready" and body["duration_seconds"] == 4
    assert body["thumbnail_url"].startswith("http://localhost:5000/storage/download/")
    assert body["created_by"] == str(staff.creator.id) and body["published_at"] is None

    free = create(client, staff, title="Knife Skills", price_cents=0)
    assert free.status_code == 201 and free.json["slug"] == "knife-skills-2"
    assert (free.json["visibility"], free.json["is_free"]) == ("public", True)
    third = create(client, staff, title="Knife skills!")
    assert third.json["slug"] == "knife-skills-3" and third.json["price_cents"] is None


def test_explicit_slug_conflict_is_409_and_soft_delete_frees_it(
    client: FlaskClient, db_session: Session, staff: Staff
) -> None:
    first = create(client, staff, slug="lesson")
    assert first.status_code == 201 and first.json["slug"] == "lesson"
    before = count_content(db_session)
    r = create(client, staff, title="Other", slug="lesson")
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"
    assert count_content(db_session) == before

    # Another org may use the same slug.
    other = make_staff()
    assert create(client, other, slug="lesson").status_code == 201

    assert client.delete(f"/api/v1/content/{first.json['id']}", headers=staff.creator.headers).status_code == 204
    again = create(client, staff, title="Again", slug="lesson")
    assert again.status_code == 201 and again.json["slug"] == "lesson"


def test_cross_org_or_deleted_media_is_404(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    other = make_staff()
    foreign = make_media(other.org.id, other.creator.id)
    r = create(client, staff, media_id=str(foreign.id))
    assert r.status_code == 404 and r.json["error"]["code"] == "MEDIA_NOT_FOUND"
    gone = make_media(staff.org.id, staff.creator.id, deleted_at=func.now())
    assert create(client, staff, media_id=str(gone.id)).json["error"]["code"] == "MEDIA_NOT_FOUND"
    assert create(client, staff, media_id=str(uuid.uuid4())).json["error"]["code"] == "MEDIA_NOT_FOUND"
    assert count_content(db_session) == 0


def test_media_type_must_match(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    audio = make_media(staff.org.id, staff.creator.id, media_type="audio")
    r = create(client, staff, media_id=str(audio.id), content_type="video")
    assert r.status_code == 422 and r.json["error"]["code"] == "CONTENT_TYPE_MISMATCH"
    unready = make_media(staff.org.id, staff.creator.id, media_type="audio", ready=False, status="uploading")
    r = create(client, staff, media_id=str(unready.id), content_type="audio")
    assert r.status_code == 201 and r.json["media_status"] == "uploading" and r.json["thumbnail_url"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price_cents": 49}, "price_cents"),
        ({"price_cents": 10_000_001}, "price_cents"),
        ({"price_cents": "1999"}, "price_cents"),
        ({"price_cents": 1999, "visibility": "public"}, "visibility"),
        ({"price_cents": 0, "visibility": "purchased_only"}, "visibility"),
        ({"visibility": "purchased_only"}, "visibility"),
        ({"visibility": "secret"}, "visibility"),
        ({"currency": "eur"}, "currency"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"slug": "a--b"}, "slug"),
        ({"slug": "x" * 101}, "slug"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"content_type": "text"}, "content_type"),
        ({"media_id": "nope"}, "media_id"),
        ({"tags": ["a"] * 11}, "tags"),
        ({"tags": ["x" * 31]}, "tags.0"),
        ({"tags": "music"}, "tags"),
        ({"category": "x" * 51}, "category"),
        ({"status": "published"}, "status"),
        ({"description": "a\x00b"}, "description"),
    ],
)
def test_create_rejects_bad_input(
    client: FlaskClient, db_session: Session, staff: Staff, body: dict[str, Any], field: str
) -> None:
    r = create(client, staff, **body)
    assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", r.json
    assert field in r.json["error"]["details"], r.json
    assert count_content(db_session) == 0


def test_create_needs_membership(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    body = {"title": "T", "content_type": "video", "media_id": str(media.id)}
    r = client.post(content_url(staff.org.id), json=body, headers=caller().headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "ORG_NOT_FOUND"
    assert client.post(content_url(staff.org.id), json=body).status_code == 401


# ---- list and get -----------------------------------------------------------------------------


def test_list_filters_sort_and_search(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    org_id = staff.org.id
    a = make_content(org_id, staff.creator.id, title="Bread basics", category="baking", status="published")
    b = make_content(org_id, staff.admin.id, title="Cakes", description="100% butter_cream", status="archived")
    c = make_content(
        org_id, staff.creator.id, title="Audio tour", media=make_media(org_id, staff.creator.id, media_type="audio")
    )
    make_content(org_id, staff.creator.id, title="Deleted bread", deleted_at=func.now())
    make_content(make_staff().org.id, staff.creator.id, title="Foreign bread")
    headers = staff.other_creator.headers

    def ids(query: str) -> list[str]:
        r = client.get(content_url(org_id) + query, headers=headers)
        assert r.status_code == 200, r.json
        return [item["id"] for item in r.json["items"]]

    assert ids("?sort=title&order=asc") == [str(c.id), str(a.id), str(b.id)]
    assert ids("?q=BREAD") == [str(a.id)]
    assert ids("?q=100%25") == [str(b.id)] and ids("?q=r_c") == [str(b.id)] and ids("?q=%25") == [str(b.id)]
    assert ids("?status=archived") == [str(b.id)]
    assert ids("?content_type=audio") == [str(c.id)]
    assert ids("?category=baking") == [str(a.id)]
    assert set(ids(f"?created_by={staff.creator.id}")) == {str(a.id), str(c.id)}
    # published_at desc puts the never-published rows last.
    assert ids("?sort=published_at")[0] == str(a.id)
    assert ids("?sort=published_at&order=asc")[0] == str(a.id)
    for bad in ("?sort=price", "?status=deleted", "?q=", "?created_by=x", "?per_page=0", "?bogus=1"):
        r = client.get(content_url(org_id) + bad, headers=headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad


def test_get_hides_other_tenants_and_deleted(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = make_content(staff.org.id, staff.creator.id)
    url = f"/api/v1/content/{content.id}"
    assert client.get(url, headers=staff.other_creator.headers).json["id"] == str(content.id)
    foreign = client.get(url, headers=caller().headers)
    missing = client.get(f"/api/v1/content/{uuid.uuid4()}", headers=staff.creator.headers)
    assert foreign.status_code == 404 and foreign.json == missing.json
    assert client.get("/api/v1/content/not-a-uuid", headers=staff.creator.headers).json["error"]["code"] == (
        "CONTENT_NOT_FOUND"
    )
    content.deleted_at = func.now()
    db_session.flush()
    assert client.get(url, headers=staff.creator.headers).status_code == 404


# ---- patch ------------------------------------------------------------------------------------


def patch(client: FlaskClient, content: Content, headers: dict[str, str], **body: Any) -> Any:
    return client.patch(f"/api/v1/content/{content.id}", json=body, headers=headers)


def test_patch_fields_and_price_rules(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = make_content(staff.org.id, staff.creator.id, price_cents=None, visibility="public")
    h = staff.creator.headers
    r = patch(client, content, h, title="New title", category=" ", tags=["B", "a", "b"], description="d")
    assert r.status_code == 200 and (r.json["title"], r.json["category"], r.json["tags"]) == (
        "New title",
        None,
        ["b", "a"],
    )
    assert r.json["slug"] == content.slug  # the slug does not follow the title
    r = patch(client, content, h, price_cents=500)
    assert (r.json["price_cents"], r.json["visibility"], r.json["is_free"]) == (500, "purchased_only", False)
    r = patch(client, content, h, price_cents=None)
    assert (r.json["price_cents"], r.json["visibility"]) == (None, "public")
    assert patch(client, content, h, visibility="purchased_only").json["error"]["details"].keys() == {"visibility"}
    r = patch(client, content, h, price_cents=0, visibility="purchased_only")
    assert r.status_code == 400 and "visibility" in r.json["error"]["details"]
    assert patch(client, content, h).json["title"] == "New title"
    for bad in ({"content_type": "audio"}, {"status": "published"}, {"slug": None}, {"media_id": None}):
        r = patch(client, content, h, **bad)
        assert r.status_code == 400 and r.json["error"]["code"] == "VALIDATION_ERROR", bad


def test_patch_slug_conflict(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    make_content(staff.org.id, staff.creator.id, slug="taken")
    content = make_content(staff.org.id, staff.creator.id, slug="mine")
    r = patch(client, content, staff.creator.headers, slug="taken")
    assert r.status_code == 409 and r.json["error"]["code"] == "SLUG_TAKEN"
    assert patch(client, content, staff.creator.headers, slug="mine").status_code == 200
    assert patch(client, content, staff.creator.headers, slug="free-now").json["slug"] == "free-now"
    db_session.expire_all()
    assert db_session.get(Content, content.id).slug == "free-now"


def test_patch_rechecks_media(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = make_content(staff.org.id, staff.creator.id, status="published")
    h = staff.creator.headers
    foreign = make_media(make_staff().org.id, staff.creator.id)
    assert patch(client, content, h, media_id=str(foreign.id)).json["error"]["code"] == "MEDIA_NOT_FOUND"
    audio = make_media(staff.org.id, staff.creator.id, media_type="audio")
    assert patch(client, content, h, media_id=str(audio.id)).json["error"]["code"] == "CONTENT_TYPE_MISMATCH"
    pending = make_media(staff.org.id, staff.creator.id, ready=False, status="processing")
    r = patch(client, content, h, media_id=str(pending.id))
    assert r.status_code == 422 and r.json["error"]["code"] == "MEDIA_NOT_READY"
    fresh = make_media(staff.org.id, staff.creator.id)
    assert patch(client, content, h, media_id=str(fresh.id)).json["media_id"] == str(fresh.id)
    # A draft may point at media that is still processing.
    draft = make_content(staff.org.id, staff.creator.id)
    assert patch(client, draft, h, media_id=str(pending.id)).json["media_status"] == "processing"


def test_only_the_creator_or_a_manager_may_change(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = make_content(staff.org.id, staff.creator.id)
    r = patch(client, content, staff.other_creator.headers, title="Mine now")
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    for action in ("publish", "unpublish", "archive"):
        r = client.post(f"/api/v1/content/{content.id}/{action}", headers=staff.other_creator.headers)
        assert r.status_code == 403, action
    assert client.delete(f"/api/v1/content/{content.id}", headers=staff.other_creator.headers).status_code == 403
    assert patch(client, content, staff.admin.headers, title="By admin").status_code == 200
    assert patch(client, content, staff.owner.headers, title="By owner").status_code == 200


# ---- status transitions -------------------------------------------------------------------------


def act(client: FlaskClient, content: Content, action: str, headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/content/{content.id}/{action}", headers=headers)


def test_publish_preconditions_and_idempotence(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id, ready=False, status="processing")
    content = make_content(staff.org.id, staff.creator.id, media=media)
    h = staff.creator.headers
    r = act(client, content, "publish", h)
    assert r.status_code == 422 and r.json["error"]["code"] == "MEDIA_NOT_READY"

    ready = make_media(staff.org.id, staff.creator.id)
    content.media_id = ready.id
    db_session.flush()
    r = act(client, content, "publish", h)
    assert r.status_code == 200 and r.json["status"] == "published" and r.json["published_at"]
    again = act(client, content, "publish", h)
    assert again.status_code == 200 and again.json["published_at"] == r.json["published_at"]
    assert again.json["updated_at"] == r.json["updated_at"]

    r = act(client, content, "unpublish", h)
    assert (r.json["status"], r.json["published_at"]) == ("draft", again.json["published_at"])
    assert act(client, content, "unpublish", h).json["status"] == "draft"
    r = act(client, content, "archive", h)
    assert r.json["status"] == "archived" and r.json["archived_at"]
    assert act(client, content, "archive", h).json["archived_at"] == r.json["archived_at"]
    assert act(client, content, "publish", h).json["status"] == "published"
    assert act(client, content, "archive", h).json["status"] == "archived"
    assert act(client, content, "unpublish", h).json["status"] == "draft"


def test_publish_refuses_deleted_media(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    content = make_content(staff.org.id, staff.creator.id, media=media)
    media.deleted_at = func.now()
    db_session.flush()
    r = act(client, content, "publish", staff.admin.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "MEDIA_NOT_READY"
    db_session.expire_all()
    assert db_session.get(Content, content.id).status == "draft"


def test_publish_needs_matching_type(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    # Only reachable through data written around the API; publish still refuses it.
    audio = make_media(staff.org.id, staff.creator.id, media_type="audio")
    content = make_content(staff.org.id, staff.creator.id, media=audio, content_type="video")
    r = act(client, content, "publish", staff.creator.headers)
    assert r.status_code == 422 and r.json["error"]["code"] == "CONTENT_TYPE_MISMATCH"


def test_actions_on_missing_or_deleted_content(client: FlaskClient, db_session: Session, staff: Staff) -> None:
    content = make_content(staff.org.id, staff.creator.id, deleted_at=func.now())
    for action in ("publish", "unpublish", "archive"):
        assert act(client, content, action, staff.owner.headers).json["error"]["code"] == "CONTENT_NOT_FOUND"
    r = client.post("/api/v1/content/nope/publish", headers=staff.owner.headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "CONTENT_NOT_FOUND"
    r = client.post(f"/api/v1/content/{content.id}/publish", json={"x": 1}, headers=staff.owner.headers)
    assert r.status_code == 400


def test_delete_keeps_the_row_and_frees_the_media(
    client: FlaskClient, db_session: Session, staff: Staff, sent_tasks: Any
) -> None:
    media = make_media(staff.org.id, staff.creator.id)
    content = make_content(staff.org.id, staff.creator.id, media=media, status="published")
    assert client.delete(f"/api/v1/media/{media.id}", headers=staff.creator.headers).status_code == 409
    assert client.delete(f"/api/v1/content/{content.id}", headers=staff.creator.headers).status_code == 204
    db_session.expire_all()
    assert db_session.get(Content, content.id).deleted_at is not None
    assert client.delete(f"/api/v1/media/{media.id}", headers=staff.creator.headers).status_code == 204


def test_every_content_operation_is_documented(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    expected = {
        "/api/v1/orgs/{org_id}/content": {"get": {"400", "404"}, "post": {"400", "404", "409", "422"}},
        "/api/v1/content/{content_id}": {"get": {"404"}, "patch": {"403", "404", "409", "422"}, "delete": {"403"}},
        "/api/v1/content/{content_id}/publish": {"post": {"403", "404", "422"}},
        "/api/v1/content/{content_id}/unpublish": {"post": {"403", "404"}},
        "/api/v1/content/{content_id}/archive": {"post": {"403", "404"}},
    }
    for path, methods in expected.items():
        for method, statuses in methods.items():
            operation = paths[path][method]
            assert operation["summary"] and statuses <= set(operation["responses"]), (path, method)
