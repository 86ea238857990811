"""Configuration: defaults, coercion, production start-up rules (README §6, security.md §12)."""

from __future__ import annotations

import pytest

from app.config import Config, ConfigError

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "x" * 40,
    "STRIPE_SECRET_KEY": "sk_live_abc",
    "STRIPE_WEBHOOK_SECRET": "whsec_real",
    "STORAGE_BACKEND": "s3",
    "MAIL_BACKEND": "smtp",
    "PUBLIC_BASE_URL": "https://api.example.com",
    "FRONTEND_URL": "https://example.com",
    "FLOWER_BASIC_AUTH": "ops:pw",
}


def test_embedded_defaults_run_locally() -> None:
    config = Config.from_env({})
    assert config.DATABASE_URL == "postgresql+psycopg://localhost:5432/codex"
    assert config.STORAGE_LOCAL_ROOT == "var/storage"
    assert config.MAIL_OUTBOX_DIR == "var/mail"
    assert config.payment_provider == "local"
    assert config.LOG_FORMAT == "console"
    assert config.broker_visibility_timeout == 11100
    config.validate()


def test_values_are_coerced() -> None:
    config = Config.from_env({"CORS_ORIGINS": "http://a, http://b", "PORT": "8080", "RATELIMIT_ENABLED": "false"})
    assert config.CORS_ORIGINS == ["http://a", "http://b"]
    assert config.PORT == 8080
    assert config.RATELIMIT_ENABLED is False
    with pytest.raises(ConfigError, match="PORT"):
        Config.from_env({"PORT": "eighty"})


def test_payment_provider_auto_resolves_from_the_key() -> None:
    assert Config.from_env({"STRIPE_SECRET_KEY": "sk_test_1"}).payment_provider == "stripe"
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        Config.from_env({"PAYMENT_PROVIDER": "stripe"}).validate()


def test_a_correct_production_config_passes() -> None:
    Config.from_env(PRODUCTION).validate()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SECRET_KEY", "dev-insecure-change-me"),
        ("SECRET_KEY", "short"),
        ("STRIPE_SECRET_KEY", ""),
        ("STRIPE_WEBHOOK_SECRET", "whsec_codex_local"),
        ("STORAGE_BACKEND", "local"),
        ("MAIL_BACKEND", "file"),
        ("PUBLIC_BASE_URL", "http://api.example.com"),
        ("FRONTEND_URL", "http://example.com"),
        ("FLOWER_BASIC_AUTH", ""),
    ],
)
def test_production_refuses_unsafe_settings(variable: str, value: str) -> None:
    expected = "PAYMENT_PROVIDER" if variable == "STRIPE_SECRET_KEY" else variable
    with pytest.raises(ConfigError, match=expected):
        Config.from_env({**PRODUCTION, variable: value}).validate()
