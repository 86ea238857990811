"""The public catalogue (api.md §8): published, non-deleted content only.

Queries select only the columns the CatalogItem needs and follow ``ix_content_catalog``
(organization_id, status, published_at DESC) WHERE deleted_at IS NULL, or for the price sort
``ix_content_catalog_price`` (..., COALESCE(price_cents, 0), id); the tag filter uses the GIN index
(``tags @> '["tag"]'``) and a selective ``q`` the trigram indexes on title and description.
Answers are cached as their JSON, exact per org (app/catalog/cache.py).
Nothing here exposes originals, rendition or full-media URLs: the only playable thing is the
preview, through the HLS proxy with a ``preview`` token.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, jsonify
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.catalog import cache
from app.content.models import Content
from app.content.service import CONTENT_NOT_FOUND, contains
from app.http import not_found, parse_uuid
from app.media.models import MediaItem
from app.media.service import presigned_url
from app.orgs.models import Organization
from app.schemas import format_timestamp, page_envelope
from app.security.hls_tokens import hls_master_url, mint_hls_token

_ITEM_COLUMNS = (
    Content.id,
    Content.organization_id,
    Content.title,
    Content.slug,
    Content.description,
    Content.content_type,
    Content.price_cents,
    Content.currency,
    Content.category,
    Content.tags,
    Content.published_at,
    MediaItem.duration_seconds,
    MediaItem.thumbnail_key,
)

_SORTS: dict[str, Any] = {
    "published_at": Content.published_at,
    "title": Content.title,
    "price_cents": func.coalesce(Content.price_cents, 0),  # free items sort as 0
}


def _published() -> list[Any]:
    return [Content.status == "published", Content.deleted_at.is_(None)]


def _item_json(row: Any) -> dict[str, Any]:
    """CatalogItem from a row carrying ``_ITEM_COLUMNS``, already as ``CatalogItemSchema`` dumps it
    (ids and times as text): a page of rows goes straight to JSON, without a marshmallow pass per
    item (tests/catalog/test_cache.py checks the bytes against the schema's)."""
    return {
        "id": str(row.id),
        "organization_id": str(row.organization_id),
        "title": row.title,
        "slug": row.slug,
        "description": row.description,
        "content_type": row.content_type,
        "price_cents": row.price_cents,
        "currency": row.currency,
        "is_free": not row.price_cents,
        "category": row.category,
        "tags": list(row.tags or []),
        "duration_seconds": row.duration_seconds,
        "thumbnail_url": presigned_url(row.thumbnail_key),
        "published_at": format_timestamp(row.published_at),
    }


def _org_and_total(session: Session, org_id_or_slug: str, filters: list[Any]) -> tuple[uuid.UUID, int]:
    """The org (id or slug; 404 ORG_NOT_FOUND) and the number of matching items, in one round trip.

    The count reads content alone (every row has its media: composite FK), so with the default
    filters it is an index-only scan of ix_content_catalog.
    """
    total = (
        select(func.count())
        .select_from(Content)
        .where(Content.organization_id == Organization.id, *_published(), *filters)
        .scalar_subquery()
    )
    row = session.execute(select(Organization.id, total).where(_org_match(org_id_or_slug))).one_or_none()
    if row is None:
        raise not_found("ORG_NOT_FOUND")
    return row[0], int(row[1] or 0)


def _org_match(org_id_or_slug: str) -> Any:
    org_id = parse_uuid(org_id_or_slug)
    return Organization.id == org_id if org_id is not None else Organization.slug == org_id_or_slug


def _filters(args: dict[str, Any]) -> list[Any]:
    filters: list[Any] = []
    if args.get("q"):
        pattern = contains(args["q"])
        filters.append(or_(Content.title.ilike(pattern, escape="\\"), Content.description.ilike(pattern, escape="\\")))
    if args.get("content_type"):
        filters.append(Content.content_type == args["content_type"])
    if args.get("category"):
        filters.append(Content.category == args["category"])
    if args.get("tag"):
        filters.append(Content.tags.contains([args["tag"]]))
    return filters


def build_list(session: Session, org_id_or_slug: str, args: dict[str, Any]) -> tuple[uuid.UUID, dict[str, Any]]:
    """The org the reference resolved to and its list page, JSON-ready (see ``_item_json``).

    The first page is read first: when it is not full, it holds every match, so its length is
    the total and the count (the expensive part of a search: every match is read) is skipped.
    Otherwise the org and the count come first, and a page past the end is not read at all.
    """
    filters = _filters(args)
    page, per_page = args["page"], args["per_page"]
    if page == 1:
        org = select(Organization.id).where(_org_match(org_id_or_slug)).scalar_subquery()
        rows = session.execute(_page_query(org, filters, args)).all()
        first = [_item_json(row) for row in rows]
        if 0 < len(rows) < per_page:
            return rows[0].organization_id, page_envelope(first, page, per_page, len(rows))
        organization_id, total = _org_and_total(session, org_id_or_slug, filters)
        return organization_id, page_envelope(first, page, per_page, total)
    organization_id, total = _org_and_total(session, org_id_or_slug, filters)
    items: list[dict[str, Any]] = []
    if (page - 1) * per_page < total:
        items = [_item_json(row) for row in session.execute(_page_query(organization_id, filters, args))]
    return organization_id, page_envelope(items, page, per_page, total)


def _page_query(organization_id: Any, filters: list[Any], args: dict[str, Any]) -> Any:
    """One page of CatalogItem rows (``organization_id``: a value or a scalar subquery)."""
    column = _SORTS[args["sort"]]
    ordering = (column.asc(), Content.id.asc()) if args["order"] == "asc" else (column.desc(), Content.id.desc())
    page, per_page = args["page"], args["per_page"]
    return (
        select(*_ITEM_COLUMNS)
        .join(MediaItem, MediaItem.id == Content.media_id)
        .where(Content.organization_id == organization_id, *_published(), *filters)
        .order_by(*ordering)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )


def list_body(session: Session, org_id_or_slug: str, args: dict[str, Any], found: cache.Lookup) -> bytes:
    """The JSON body of the catalogue list (exactly what the ``CatalogItem`` list schema would send):
    ``found``'s cached page while the org's catalogue generation is current (app/catalog/cache.py),
    else built and stored under the generation read before the database reads."""
    if found.body is not None:
        return found.body
    org_id, generation = found.org_id, found.generation
    if org_id is None:
        org_id = str(_resolve_org(session, org_id_or_slug))
        generation = cache.generation(org_id)  # before the reads the page is built from
    resolved, envelope = build_list(session, org_id_or_slug, args)
    body = jsonify(envelope).get_data()
    if str(resolved) == org_id:
        cache.store(found.key, org_id, generation, body)
    else:  # the slug names another org now (or moved between the two reads): serve, do not keep
        cache.forget(found.key)
    return body


def _resolve_org(session: Session, org_id_or_slug: str) -> uuid.UUID:
    org_id = session.scalar(select(Organization.id).where(_org_match(org_id_or_slug)))
    if org_id is None:
        raise not_found("ORG_NOT_FOUND")
    return org_id


def preview_view(content_id: uuid.UUID, media_id: uuid.UUID, has_preview: bool) -> dict[str, Any] | None:
    """``{manifest_url, expires_at}`` with a fresh preview token, or None without a preview."""
    if not has_preview:
        return None
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(
        seconds=int(current_app.config["PREVIEW_TOKEN_TTL_SECONDS"])
    )
    token = mint_hls_token(
        content_id=content_id, media_id=media_id, user_id=None, scope="preview", expires_at=expires_at
    )
    return {"manifest_url": hls_master_url(token), "expires_at": expires_at}


def _detail_json(session: Session, content_id: uuid.UUID) -> dict[str, Any]:
    """CatalogDetail without its preview, JSON-ready, plus what the preview token needs
    (``_media_id``, ``_has_preview``); 404 unless published and not deleted."""
    row = session.execute(
        select(*_ITEM_COLUMNS, Content.media_id, MediaItem.hls_preview_key, Organization.name, Organization.slug)
        .join(MediaItem, MediaItem.id == Content.media_id)
        .join(Organization, Organization.id == Content.organization_id)
        .where(Content.id == content_id, *_published())
    ).one_or_none()
    if row is None:
        raise not_found(CONTENT_NOT_FOUND)
    org_name, org_slug = row[-2], row[-1]
    return {
        **_item_json(row),
        "organization": {"id": str(row.organization_id), "name": org_name, "slug": org_slug},
        "_media_id": str(row.media_id),
        "_has_preview": bool(row.hls_preview_key),
    }


def detail_body(session: Session, content_id: uuid.UUID) -> bytes:
    """The JSON body of a catalogue item: its facts from the cache while the org's catalogue
    generation is current (app/catalog/cache.py; org name and slug included), with a preview
    token minted for this request."""
    found = cache.lookup(cache.item_key(content_id))
    if found.body is not None:
        facts = json.loads(found.body)
    else:
        org_id, generation = found.org_id, found.generation  # (a content item never changes org)
        if org_id is None:
            owner = session.scalar(select(Content.organization_id).where(Content.id == content_id))
            if owner is None:
                raise not_found(CONTENT_NOT_FOUND)
            org_id = str(owner)
            generation = cache.generation(org_id)  # before the read the facts come from
        facts = _detail_json(session, content_id)
        cache.store(found.key, org_id, generation, json.dumps(facts).encode())
    media_id, has_preview = facts.pop("_media_id"), facts.pop("_has_preview")
    preview = preview_view(content_id, uuid.UUID(media_id), has_preview)
    if preview is not None:
        preview["expires_at"] = format_timestamp(preview["expires_at"])
    return jsonify({**facts, "preview": preview}).get_data()
