"""Slug generation (api.md §7)."""

from __future__ import annotations

import pytest

from app.content.slugs import slugify


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Knife Skills", "knife-skills"),
        ("  Crème Brûlée: 101!  ", "creme-brulee-101"),
        ("--A__B--", "a-b"),
        ("日本語", "content"),
        ("!!!", "content"),
        ("x" * 150, "x" * 96),
        ("a" * 95 + " b", "a" * 95),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug
