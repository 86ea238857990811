"""Templates, the variable table, formatting and branding (jobs.md §8.3, §8.4; security.md §15)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest
from sqlalchemy.orm import Session

from app.notifications.models import TEMPLATES
from app.notifications.rendering import (
    COMMON_VARIABLES,
    TEMPLATE_DIR,
    VARIABLES,
    Money,
    TemplateContextError,
    clean_subject,
    format_datetime,
    format_duration,
    format_money,
    prepare_context,
    render_email,
    sample_context,
)
from app.orgs.branding import Branding, branding_for
from tests.factories import OrganizationFactory
from tests.notifications.conftest import MailContext

FRONTEND = "http://localhost:3000"


def platform_branding(**overrides: Any) -> Branding:
    values: dict[str, Any] = {
        "platform_name": "Codex",
        "logo_url": None,
        "primary_color": "#3B82F6",
        "secondary_color": None,
        "support_email": "support@localhost",
        "contact_url": None,
        "business_name": None,
        "timezone": "UTC",
    }
    values.update(overrides)
    return Branding(**values)


def render(template: str, context: dict[str, Any] | None = None, branding: Branding | None = None) -> Any:
    stored = prepare_context(template, context if context is not None else sample_context(template))
    return render_email(template, stored, branding or platform_branding())


# ---- the template set ------------------------------------------------------------------------------


def test_every_spec_template_has_its_three_parts() -> None:
    assert set(VARIABLES) == set(TEMPLATES)
    for template in TEMPLATES:
        for part in ("subject.txt", "body.txt", "body.html"):
            assert (TEMPLATE_DIR / template / part).is_file(), f"{template}/{part}"
    assert (TEMPLATE_DIR / "_layout.html").is_file()


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_with_its_documented_variables(mail_app: MailContext, template: str) -> None:
    email = render(template)
    assert email.subject and "\n" not in email.subject and len(email.subject) <= 200
    assert email.text.strip(), "a text part always"
    assert "Hi Sam Sample," in email.text
    assert "<html" in email.html and "Codex" in email.html
    assert "support@localhost" in email.text and "support@localhost" in email.html
    # Every variable of the table reaches the customer in at least one part.
    for name, value in sample_context(template).items():
        if isinstance(value, str) and name != "user_name":
            assert value in email.text or value in email.html, name


@pytest.mark.parametrize("template", TEMPLATES)
def test_html_links_only_point_to_the_frontend(mail_app: MailContext, template: str) -> None:
    html = render(template).html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs, "every email has at least one link"
    assert all(href.startswith(FRONTEND + "/") for href in hrefs), hrefs
    assert "<img" not in html or "height=" in html  # no tracking pixels: only the optional logo


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_missing_required_variable_fails_at_queue_time(mail_app: MailContext, template: str) -> None:
    context = sample_context(template)
    for name in VARIABLES[template]:
        partial = {k: v for k, v in context.items() if k != name}
        with pytest.raises(TemplateContextError, match=name):
            prepare_context(template, partial)


def test_unknown_templates_and_variables_and_wrong_kinds_are_errors(mail_app: MailContext) -> None:
    with pytest.raises(TemplateContextError, match="unknown email template"):
        prepare_context("newsletter", {})
    with pytest.raises(TemplateContextError, match="unknown variables contnet_title"):
        prepare_context("access-granted", {**sample_context("access-granted"), "contnet_title": "typo"})
    with pytest.raises(TemplateContextError, match="platform_name"):
        prepare_context("welcome", {"login_url": f"{FRONTEND}/login", "platform_name": "Evil"})
    receipt = sample_context("purchase-receipt")
    with pytest.raises(TemplateContextError, match="amount"):
        prepare_context("purchase-receipt", {**receipt, "amount": 1999})
    with pytest.raises(TemplateContextError, match="purchased_at"):
        prepare_context("purchase-receipt", {**receipt, "purchased_at": datetime(2025, 3, 2)})  # naive
    with pytest.raises(TemplateContextError, match="FRONTEND_URL"):
        prepare_context("welcome", {"login_url": "https://evil.example/login"})
    with pytest.raises(TemplateContextError, match="FRONTEND_URL"):
        prepare_context("welcome", {"login_url": "javascript:alert(1)"})
    with pytest.raises(TemplateContextError, match="expires_in_hours"):
        prepare_context(
            "email-verification", {"verification_url": f"{FRONTEND}/verify-email?token=t", "expires_in_hours": "24"}
        )


def test_context_is_stored_json_safe_and_formatted_at_render_time(mail_app: MailContext) -> None:
    stored = prepare_context("purchase-receipt", sample_context("purchase-receipt"))
    assert stored["amount"] == {"cents": 1999, "currency": "usd"}
    assert stored["purchased_at"] == "2025-03-02T13:05:00+00:00"
    email = render_email("purchase-receipt", stored, platform_branding(timezone="Europe/Paris"))
    assert "$19.99" in email.text and "$19.99" in email.html
    assert "March 2, 2025 14:05 (Europe/Paris)" in email.text


# ---- escaping and subjects -----------------------------------------------------------------------


def test_html_escapes_injected_values(mail_app: MailContext) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    context = {**sample_context("new-sale"), "content_title": evil, "customer_name": evil, "user_name": evil}
    email = render("new-sale", context, platform_branding(platform_name=evil, business_name=evil))
    assert "<script" not in email.html
    assert "<img src=x" not in email.html
    assert "&lt;script&gt;" in email.html
    assert evil in email.text  # the text part is plain text: nothing to escape, nothing executes


def test_subject_is_one_line_without_cr_lf_and_at_most_200_characters(mail_app: MailContext) -> None:
    context = {**sample_context("access-granted"), "content_title": "Line one\r\nBcc: victim@example.com\nx" * 20}
    email = render("access-granted", context)
    assert "\r" not in email.subject and "\n" not in email.subject
    assert len(email.subject) <= 200
    assert clean_subject("  a \r\n b\tc  ") == "a b c"
    assert len(clean_subject("x" * 500)) == 200


# ---- formatting ----------------------------------------------------------------------------------


def test_money_format() -> None:
    assert format_money(1999, "usd") == "$19.99"
    assert format_money(1999, "eur") == "19.99 EUR"
    assert format_money(5, "usd") == "$0.05"
    assert format_money(123456, "gbp") == "1,234.56 GBP"


def test_dates_are_shown_in_the_branding_timezone() -> None:
    moment = datetime(2025, 3, 2, 13, 5, tzinfo=UTC)
    assert format_datetime(moment, "Europe/Paris") == "March 2, 2025 14:05 (Europe/Paris)"
    assert format_datetime(moment, "UTC") == "March 2, 2025 13:05 (UTC)"
    assert format_datetime(moment.isoformat(), None) == "March 2, 2025 13:05 (UTC)"
    assert format_datetime(moment, "Not/AZone") == "March 2, 2025 13:05 (UTC)"


def test_duration_format() -> None:
    assert format_duration(5) == "0:05"
    assert format_duration(754) == "12:34"
    assert format_duration(3723) == "1:02:03"


# ---- branding ------------------------------------------------------------------------------------


def test_branded_layout_uses_the_org_settings(mail_app: MailContext, db_session: Session) -> None:
    org = OrganizationFactory(
        name="Bakery",
        settings__platform_name="Bakery Academy",
        settings__primary_color="#AA0011",
        settings__secondary_color="#00BB22",
        settings__support_email="help@bakery.example",
        settings__business_name="Bakery Academy Ltd",
        settings__contact_url="https://bakery.example/contact",
        settings__timezone="Europe/Paris",
        settings__logo_key="orgs/x/branding/logo-1.png",
    )
    branding = branding_for(db_session, org.id)
    email = render("purchase-receipt", branding=branding)
    assert "Bakery Academy" in email.html and "Bakery Academy Ltd" in email.html
    assert "#AA0011" in email.html and "#00BB22" in email.html
    assert "help@bakery.example" in email.html and "help@bakery.example" in email.text
    assert "https://bakery.example/contact" in email.text
    assert '<img src="http://localhost:5000/storage/public/orgs/x/branding/logo-1.png"' in email.html
    assert "(Europe/Paris)" in email.text
    assert f"© {datetime.now(UTC).year} Bakery Academy Ltd" in email.html.replace("&copy;", "©")


def test_platform_defaults_without_an_org(mail_app: MailContext, db_session: Session) -> None:
    email = render("welcome", branding=branding_for(db_session, None))
    assert "#3B82F6" in email.html
    assert "Codex" in email.html and "support@localhost" in email.text
    assert "<img" not in email.html


def test_common_variables_cannot_be_left_undefined(mail_app: MailContext) -> None:
    assert set(COMMON_VARIABLES) >= {"platform_name", "logo_url", "frontend_url", "year", "user_name"}
    stored = prepare_context("welcome", sample_context("welcome"))
    del stored["login_url"]  # e.g. a row written by an older release
    with pytest.raises(jinja2.UndefinedError):
        render_email("welcome", stored, platform_branding())


def test_a_stored_value_that_no_longer_fits_is_a_render_error(mail_app: MailContext) -> None:
    stored = prepare_context("new-sale", sample_context("new-sale"))
    stored["amount"] = 1999  # not {"cents", "currency"}
    with pytest.raises(TemplateContextError, match="amount"):
        render_email("new-sale", stored, platform_branding())


def test_greeting_without_a_user_name(mail_app: MailContext) -> None:
    context = {k: v for k, v in sample_context("welcome").items() if k != "user_name"}
    assert "Hi there," in render("welcome", context).text


def test_money_helper_accepts_a_mapping(mail_app: MailContext) -> None:
    context = {**sample_context("new-sale"), "amount": {"cents": 250, "currency": "EUR"}}
    assert prepare_context("new-sale", context)["amount"] == {"cents": 250, "currency": "eur"}
    assert "2.50 EUR" in render("new-sale", {**context, "amount": Money(250, "eur")}).text
