"""Session cache, sliding expiry, list and revoke sessions (security.md §1, api.md §3)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib

from app import keys
from app.identity import me_cache
from app.identity import sessions as sessions_module
from app.identity.sessions import hash_token
from app.speed.nearcache import MISS
from tests.identity.helpers import ORIGIN, TEST_PASSWORD, auth, make_user, session_row, signed_in

ME = "/api/v1/auth/me"
SESSIONS = "/api/v1/auth/sessions"


def session_id_of(db_session, token):
    from sqlalchemy import select

    from app.identity.models import AuthSession

    return db_session.scalar(select(AuthSession.id).where(AuthSession.token_hash == hash_token(token)))


def test_first_request_caches_the_session(client, db_session, redis) -> None:
    user = make_user()
    token = signed_in(user)
    assert client.get(ME, headers=auth(token)).status_code == 200
    key = f"sess:{hash_token(token)}"
    cached = json.loads(redis.get(key))
    assert cached["user_id"] == str(user.id)
    assert cached["role"] == "customer"
    assert cached["session_id"] == str(session_id_of(db_session, token))
    assert {"expires_at", "session_id", "user_id", "role"} <= set(cached)
    assert 0 < redis.ttl(key) <= 300
    assert redis.smembers(f"sess:u:{user.id}") == {hash_token(token).encode()}
    assert token.encode() not in b"".join(redis.keys("*"))  # only the hash is stored


def test_cache_ttl_is_capped_by_the_remaining_lifetime(client, db_session, redis) -> None:
    token = signed_in(make_user(), expires_in=timedelta(seconds=60))
    client.get(ME, headers=auth(token))
    assert 0 < redis.ttl(f"sess:{hash_token(token)}") <= 60


def test_cached_session_is_used_without_the_database_lookup(client, db_session, redis, monkeypatch) -> None:
    token = signed_in(make_user())
    client.get(ME, headers=auth(token))
    monkeypatch.setattr(sessions_module, "_load_from_db", lambda *a: pytest.fail("database lookup on a cache hit"))
    assert client.get(ME, headers=auth(token)).status_code == 200


def test_redis_down_falls_back_to_the_database(client, db_session, app, monkeypatch) -> None:
    token = signed_in(make_user())

    def broken(*args, **kwargs):
        raise redis_lib.ConnectionError("down")

    client_redis = app.extensions["redis"]
    monkeypatch.setattr(client_redis, "get", broken)
    monkeypatch.setattr(client_redis, "pipeline", broken)
    assert client.get(ME, headers=auth(token)).status_code == 200
    assert client.get(ME, headers=auth("y" * 43)).status_code == 401


def test_revocation_evicts_the_cache_at_once(client, db_session, redis) -> None:
    user = make_user()
    token = signed_in(user)
    client.get(ME, headers=auth(token))
    assert redis.exists(f"sess:{hash_token(token)}")
    sid = session_id_of(db_session, token)
    other = signed_in(user)
    assert client.delete(f"{SESSIONS}/{sid}", headers=auth(other)).status_code == 204
    assert redis.get(f"sess:{hash_token(token)}") == b"revoked"  # a tombstone replaces the entry
    assert client.get(ME, headers=auth(token)).status_code == 401


def test_a_revocation_reaches_every_process_at_once(client, db_session, redis, as_other_process) -> None:
    """Another web process holds the session in its near cache; the next request it serves after
    the revocation (no wait) is refused."""
    user = make_user()
    for _ in range(10):
        token, other = signed_in(user), signed_in(user)
        with as_other_process() as near:
            # The database read and put, the fill, then a hit; a loaded machine can deliver the put's
            # invalidation late, which rightly drops a fill, so a few more requests may be needed.
            for _ in range(20):
                assert client.get(ME, headers=auth(token)).status_code == 200
                if near.get(f"sess:{hash_token(token)}") not in (MISS, None):
                    break
            assert near.get(f"sess:{hash_token(token)}") not in (MISS, None)
        sid = session_id_of(db_session, token)
        assert client.delete(f"{SESSIONS}/{sid}", headers=auth(other)).status_code == 204
        with as_other_process():
            assert client.get(ME, headers=auth(token)).status_code == 401


def test_a_read_racing_a_revocation_cannot_cache_the_revoked_session(client, db_session, redis, monkeypatch) -> None:
    """The request read the session row before the revocation committed, and caches it after the
    eviction: the tombstone wins, so the token is refused from then on."""
    user = make_user()
    token = signed_in(user)
    sid = session_id_of(db_session, token)
    real_load = sessions_module._load_from_db

    def load_then_get_revoked(*args):
        principal = real_load(*args)  # the row, still active...
        monkeypatch.setattr(sessions_module, "_load_from_db", real_load)
        with client.application.app_context():  # ...revoked by another request meanwhile
            from app import db
            from app.identity import service

            service.revoke_session(db.session, user.id, sid)
            db.session.commit()
        return principal

    monkeypatch.setattr(sessions_module, "_load_from_db", load_then_get_revoked)
    assert client.get(ME, headers=auth(token)).status_code == 200  # this one was already in flight
    assert redis.get(f"sess:{hash_token(token)}") == b"revoked"
    assert client.get(ME, headers=auth(token)).status_code == 401


def test_sliding_expiry_after_five_minutes(client, db_session, redis) -> None:
    user = make_user()
    token = signed_in(user, last_seen_ago=timedelta(minutes=6), expires_in=timedelta(hours=2))
    sid = session_id_of(db_session, token)
    assert client.get(ME, headers=auth(token)).status_code == 200
    row = session_row(db_session, sid)
    now = datetime.now(UTC)
    assert now - row.last_seen_at < timedelta(seconds=30)
    assert abs(row.expires_at - (now + timedelta(hours=24))) < timedelta(seconds=30)
    assert not redis.exists(f"sess:{hash_token(token)}")  # refreshed from the database next time


def test_no_slide_within_five_minutes(client, db_session) -> None:
    token = signed_in(make_user(), last_seen_ago=timedelta(minutes=2), expires_in=timedelta(hours=2))
    sid = session_id_of(db_session, token)
    before = session_row(db_session, sid).expires_at
    client.get(ME, headers=auth(token))
    assert session_row(db_session, sid).expires_at == before


def test_no_slide_on_a_failed_request(client, db_session) -> None:
    token = signed_in(make_user(), last_seen_ago=timedelta(minutes=6), expires_in=timedelta(hours=2))
    sid = session_id_of(db_session, token)
    before = session_row(db_session, sid).last_seen_at
    r = client.get(SESSIONS + "?page=0", headers=auth(token))
    assert r.status_code == 400
    assert session_row(db_session, sid).last_seen_at == before


def test_remember_me_cookie_is_reissued_when_sliding(client, db_session) -> None:
    user = make_user()
    token = signed_in(user, remember_me=True, last_seen_ago=timedelta(minutes=10), expires_in=timedelta(days=1))
    client.set_cookie("codex_session", token)
    r = client.get(ME)
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"codex_session={token};") and "Max-Age=2592000" in cookie
    row = session_row(db_session, session_id_of(db_session, token))
    assert row.expires_at - datetime.now(UTC) > timedelta(days=29)
    # a non-remember session, or a bearer caller, gets no cookie
    plain = signed_in(user, last_seen_ago=timedelta(minutes=10))
    assert "Set-Cookie" not in client.get(ME, headers=auth(plain)).headers


def test_list_sessions_active_only_ordered_with_current_flag(client, db_session) -> None:
    user = make_user()
    old = signed_in(user, last_seen_ago=timedelta(hours=3))
    mine = signed_in(user, last_seen_ago=timedelta(minutes=1))
    signed_in(user, revoked=True)
    signed_in(user, expires_in=timedelta(seconds=-5))
    signed_in(make_user())  # someone else's
    r = client.get(SESSIONS, headers=auth(mine))
    assert r.status_code == 200
    body = r.json
    assert body["total"] == 2 and body["pages"] == 1 and body["page"] == 1 and body["per_page"] == 20
    ids = [item["id"] for item in body["items"]]
    assert ids == [str(session_id_of(db_session, mine)), str(session_id_of(db_session, old))]
    assert [item["current"] for item in body["items"]] == [True, False]
    assert set(body["items"][0]) == {
        "id", "remember_me", "created_at", "last_seen_at", "expires_at", "ip_address", "user_agent", "current",
    }  # fmt: skip
    assert body["items"][0]["ip_address"] is None


def test_list_sessions_paging_and_bad_query(client, db_session) -> None:
    user = make_user()
    token = signed_in(user)
    for _ in range(2):
        signed_in(user)
    r = client.get(SESSIONS + "?per_page=2&page=2", headers=auth(token))
    assert r.json["total"] == 3 and r.json["pages"] == 2 and len(r.json["items"]) == 1
    for query in ("per_page=0", "per_page=101", "page=0", "page=1&page=2", "sort=x", "page=abc"):
        r = client.get(f"{SESSIONS}?{query}", headers=auth(token))
        assert r.status_code == 400, query
    assert client.get(SESSIONS).status_code == 401


def test_delete_session_errors(client, db_session) -> None:
    user = make_user()
    token = signed_in(user)
    other_user_session = session_id_of(db_session, signed_in(make_user()))
    revoked = session_id_of(db_session, signed_in(user, revoked=True))
    expired = session_id_of(db_session, signed_in(user, expires_in=timedelta(seconds=-5)))
    for target in (other_user_session, revoked, expired, uuid.uuid4(), "not-a-uuid", "1234"):
        r = client.delete(f"{SESSIONS}/{target}", headers=auth(token))
        assert r.status_code == 404, target
        assert r.json["error"]["code"] == "SESSION_NOT_FOUND"
    assert client.delete(f"{SESSIONS}/{uuid.uuid4()}").status_code == 401
    r = client.delete(f"{SESSIONS}/not-a-uuid", json={"x": 1}, headers=auth(token))
    assert r.status_code == 404  # path id is checked before the body


def test_delete_current_session_clears_cookie(client, db_session) -> None:
    user = make_user(email="ana@example.com")
    token = client.post("/api/v1/auth/login", json={"email": user.email, "password": TEST_PASSWORD}).json["token"]
    sid = session_id_of(db_session, token)
    r = client.delete(f"{SESSIONS}/{sid}", headers={"Origin": ORIGIN})
    assert r.status_code == 204
    assert "Max-Age=0" in r.headers["Set-Cookie"]
    assert client.get(ME).status_code == 401


def test_delete_other_session_keeps_cookie(client, db_session) -> None:
    user = make_user()
    token = signed_in(user)
    other = session_id_of(db_session, signed_in(user))
    r = client.delete(f"{SESSIONS}/{other}", headers=auth(token))
    assert r.status_code == 204 and "Set-Cookie" not in r.headers
    assert session_row(db_session, other).revoked_at is not None


def test_unreadable_cache_entry_falls_back_to_the_database(client, db_session, redis) -> None:
    token = signed_in(make_user())
    redis.set(f"sess:{hash_token(token)}", b"not json", ex=60)
    assert client.get(ME, headers=auth(token)).status_code == 200
    assert json.loads(redis.get(f"sess:{hash_token(token)}"))["role"] == "customer"


def test_expired_cache_entry_is_rejected(client, db_session, redis) -> None:
    token = signed_in(make_user(), expires_in=timedelta(seconds=2))
    client.get(ME, headers=auth(token))
    cached = json.loads(redis.get(f"sess:{hash_token(token)}"))
    cached["expires_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    redis.set(f"sess:{hash_token(token)}", json.dumps(cached), ex=60)
    assert client.get(ME, headers=auth(token)).status_code == 401


def test_the_keys_read_with_the_session_travel_on_that_requests_principal_only(app, client, db_session, redis) -> None:
    """``Principal.prefetched`` is what this request's session read fetched for its view; a
    principal parsed from the same cache entry for another request (they share the parse memo)
    carries nothing, and equals it otherwise."""
    user = make_user()
    token = signed_in(user)
    assert client.get(ME, headers=auth(token)).status_code == 200  # session and body now in Redis
    body_key, generation_key = keys.me_body(user.id), keys.me_generation(user.id)
    with app.test_request_context(ME, headers=auth(token)):
        reading = sessions_module.resolve(me_cache.session_keys)
    with app.test_request_context(ME, headers=auth(token)):
        plain = sessions_module.resolve()
    assert reading is not None and plain is not None
    assert dict(reading.prefetched) == {body_key: redis.get(body_key), generation_key: redis.get(generation_key)}
    assert reading.prefetched[body_key] is not None
    assert dict(plain.prefetched) == {}
    assert plain == reading and plain.user_id == user.id
