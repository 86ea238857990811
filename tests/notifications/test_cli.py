"""``flask codex email-preview``: what customers receive, rendered with sample data."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session

from app.notifications.models import TEMPLATES
from tests.factories import OrganizationFactory


def test_preview_writes_html_and_text_and_prints_the_text(app: Flask, db_session: Session, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(args=["codex", "email-preview", "purchase-receipt", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "purchase-receipt.html").read_text()
    text = (tmp_path / "purchase-receipt.txt").read_text()
    assert html.startswith("<!DOCTYPE html>") and "$19.99" in html
    assert "Subject: Your receipt for Mastering Sourdough" in result.output
    assert text.strip() in result.output


def test_preview_all_with_org_branding(app: Flask, db_session: Session, tmp_path: Path) -> None:
    org = OrganizationFactory(settings__platform_name="Bakery Academy", settings__primary_color="#AA0011")
    result = app.test_cli_runner().invoke(
        args=["codex", "email-preview", "all", "--out", str(tmp_path), "--org", str(org.id), "--eml"]
    )
    assert result.exit_code == 0, result.output
    for template in TEMPLATES:
        assert "#AA0011" in (tmp_path / f"{template}.html").read_text()
        assert (tmp_path / f"{template}.txt").read_text().strip()
        assert b"X-Codex-Template: " + template.encode() in (tmp_path / f"{template}.eml").read_bytes()


def test_preview_rejects_unknown_templates(app: Flask, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(args=["codex", "email-preview", "newsletter", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "newsletter" in result.output
