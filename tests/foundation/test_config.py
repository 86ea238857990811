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
    "CORS_ORIGINS": "https://example.com,https://admin.example.com",
    "TRUSTED_PROXY_COUNT": "1",
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


def test_production_refuses_the_default_webhook_secret_among_rotated_ones() -> None:
    for value in ("whsec_real,whsec_codex_local", "whsec_codex_local, whsec_real", ""):
        with pytest.raises(ConfigError, match="STRIPE_WEBHOOK_SECRET"):
            Config.from_env({**PRODUCTION, "STRIPE_WEBHOOK_SECRET": value}).validate()
    Config.from_env({**PRODUCTION, "STRIPE_WEBHOOK_SECRET": "whsec_new,whsec_old"}).validate()


@pytest.mark.parametrize(
    "origins",
    [
        "",  # empty
        ",",
        "*",
        "https://example.com,*",
        "https://*.example.com",
        "http://example.com",
        "https://example.com, http://localhost:3000",
    ],
)
def test_production_refuses_cors_origins_that_are_empty_wildcard_or_not_https(origins: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        Config.from_env({**PRODUCTION, "CORS_ORIGINS": origins}).validate()


def test_production_requires_trusted_proxy_count_set_explicitly() -> None:
    unset = {name: value for name, value in PRODUCTION.items() if name != "TRUSTED_PROXY_COUNT"}
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT"):
        Config.from_env(unset).validate()
    explicit_zero = Config.from_env({**unset, "TRUSTED_PROXY_COUNT": "0"})
    explicit_zero.validate()  # 0 is an answer: no proxy in front
    assert explicit_zero.TRUSTED_PROXY_COUNT == 0
    Config.from_env(unset, TRUSTED_PROXY_COUNT=0).validate()
    # elsewhere unset is fine and trusts no proxy
    assert Config.from_env({}).TRUSTED_PROXY_COUNT is None
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_COUNT"):
        Config.from_env({"TRUSTED_PROXY_COUNT": "-1"}).validate()


def test_api_docs_default_to_off_in_production_only() -> None:
    assert Config.from_env(PRODUCTION).API_DOCS_ENABLED is False
    assert Config.from_env({**PRODUCTION, "API_DOCS_ENABLED": "true"}).API_DOCS_ENABLED is True
    assert Config.from_env(PRODUCTION, API_DOCS_ENABLED=True).API_DOCS_ENABLED is True
    assert Config.from_env({}).API_DOCS_ENABLED is True
    assert Config.from_env({"APP_ENV": "test"}).API_DOCS_ENABLED is True


def test_s3_public_endpoint_defaults_to_the_internal_one() -> None:
    config = Config.from_env({"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": "http://s3:7070/"})
    assert config.S3_ENDPOINT_URL == "http://s3:7070"
    assert config.s3_public_endpoint_url == "http://s3:7070"
    config.validate()
    split = Config.from_env(
        {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": "http://s3:7070",
            "S3_PUBLIC_ENDPOINT_URL": "http://localhost:7070",
        }
    )
    assert split.s3_public_endpoint_url == "http://localhost:7070"
    split.validate()
    assert Config.from_env({}).s3_public_endpoint_url == ""  # AWS's own endpoints


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"S3_ENDPOINT_URL": "s3:7070"}, "S3_ENDPOINT_URL"),
        ({"S3_PUBLIC_ENDPOINT_URL": "ftp://media.example.com"}, "S3_PUBLIC_ENDPOINT_URL"),
        ({"S3_PUBLIC_ENDPOINT_URL": "https://media.example.com/bucket"}, "S3_PUBLIC_ENDPOINT_URL"),
        ({"S3_BUCKET": ""}, "S3_BUCKET"),
        ({"AWS_ACCESS_KEY_ID": "codex"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": "secret"}, "AWS_ACCESS_KEY_ID"),
    ],
)
def test_s3_settings_are_checked_when_s3_is_the_backend(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env({"STORAGE_BACKEND": "s3", **variables}).validate()
    Config.from_env(variables).validate()  # unused with local storage


@pytest.mark.parametrize(
    ("variables", "ok"),
    [
        ({}, True),  # AWS: https endpoints
        ({"S3_ENDPOINT_URL": "https://s3.example.com"}, True),
        ({"S3_ENDPOINT_URL": "http://s3:7070", "S3_PUBLIC_ENDPOINT_URL": "https://media.example.com"}, True),
        ({"S3_ENDPOINT_URL": "http://s3:7070"}, False),  # browsers would get http URLs
        ({"S3_ENDPOINT_URL": "https://s3.example.com", "S3_PUBLIC_ENDPOINT_URL": "http://media.example.com"}, False),
    ],
)
def test_production_hands_out_only_https_storage_urls(variables: dict[str, str], ok: bool) -> None:
    config = Config.from_env({**PRODUCTION, **variables})
    if ok:
        config.validate()
    else:
        with pytest.raises(ConfigError, match="S3_PUBLIC_ENDPOINT_URL"):
            config.validate()


def test_the_upload_body_idle_bound_is_zero_or_more() -> None:
    assert Config.from_env({}).UPLOAD_BODY_IDLE_SECONDS == 60
    assert Config.from_env({"UPLOAD_BODY_IDLE_SECONDS": "0"}).UPLOAD_BODY_IDLE_SECONDS == 0  # (off)
    with pytest.raises(ConfigError, match="UPLOAD_BODY_IDLE_SECONDS"):
        Config.from_env({"UPLOAD_BODY_IDLE_SECONDS": "-1"}).validate()
