"""Configuration read from the environment, with embedded defaults for a fresh machine.

Every variable of the spec's configuration table (spec README §6) lives here. Defaults run a
development stack against local Postgres and Redis, files under ``var/`` and the local payment
provider. ``Config.validate()`` enforces the production rules; ``create_app`` calls it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_WEBHOOK_SECRET = "whsec_codex_local"  # the public development default


class ConfigError(RuntimeError):
    """A configuration value breaks a rule; the message names the variable."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class Config:
    """Typed settings. Field names are the environment variable names."""

    APP_ENV: str = "development"
    SECRET_KEY: str = "dev-insecure-change-me"
    DATABASE_URL: str = "postgresql+psycopg://localhost:5432/codex"
    DATABASE_POOL_SIZE: int = 10
    REDIS_URL: str = "redis://localhost:6379/0"
    CELERY_BROKER_URL: str = "redis://localhost:6379/1"
    PUBLIC_BASE_URL: str = "http://localhost:5000"
    FRONTEND_URL: str = "http://localhost:3000"
    CORS_ORIGINS: list[str] = field(default_factory=lambda: ["http://localhost:3000"])
    # None: not set, which trusts no proxy like 0 does; production requires an explicit answer.
    TRUSTED_PROXY_COUNT: int | None = None
    SESSION_TTL_HOURS: int = 24
    SESSION_REMEMBER_DAYS: int = 30
    SESSION_COOKIE_DOMAIN: str = ""
    MAX_CONTENT_LENGTH: int = 1048576
    RATELIMIT_ENABLED: bool = True
    NEAR_CACHE_ENABLED: bool = True
    FAST_PATH_ENABLED: bool = True
    STORAGE_BACKEND: str = "local"
    STORAGE_LOCAL_ROOT: str = "var/storage"
    S3_BUCKET: str = "codex-media"
    S3_ENDPOINT_URL: str = ""
    # Where browsers and players reach the same server (presigned URLs only); empty: S3_ENDPOINT_URL.
    S3_PUBLIC_ENDPOINT_URL: str = ""
    S3_REGION: str = "us-east-1"
    AWS_ACCESS_KEY_ID: str = ""
    AWS_SECRET_ACCESS_KEY: str = ""
    STORAGE_PUBLIC_BASE_URL: str = ""
    UPLOAD_URL_TTL_SECONDS: int = 3600
    # Under gunicorn: an upload body (a part or a single PUT to local storage) that sends no byte for
    # this long is given up, freeing its server thread; 0 leaves it to a proxy in front.
    UPLOAD_BODY_IDLE_SECONDS: int = 60
    DOWNLOAD_URL_TTL_SECONDS: int = 3600
    PREVIEW_TOKEN_TTL_SECONDS: int = 3600
    MEDIA_MAX_VIDEO_BYTES: int = 5368709120
    MEDIA_MAX_AUDIO_BYTES: int = 524288000
    MEDIA_MAX_ATTEMPTS: int = 3
    MEDIA_TASK_SOFT_TIME_LIMIT: int = 7200
    MEDIA_STUCK_AFTER_SECONDS: int = 900
    FFMPEG_PATH: str = "ffmpeg"
    FFPROBE_PATH: str = "ffprobe"
    MEDIA_X264_PRESET: str = "veryfast"
    MEDIA_FFMPEG_MAX_MEMORY_MB: int = 4096  # RLIMIT_AS of every ffmpeg/ffprobe child (security.md §8)
    PAYMENT_PROVIDER: str = "auto"
    STRIPE_SECRET_KEY: str = ""
    STRIPE_WEBHOOK_SECRET: list[str] = field(default_factory=lambda: [DEFAULT_WEBHOOK_SECRET])
    STRIPE_API_BASE: str = "https://api.stripe.com"
    STRIPE_API_VERSION: str = "2024-06-20"
    DEFAULT_CURRENCY: str = "usd"
    SUPPORTED_CURRENCIES: list[str] = field(default_factory=lambda: ["usd"])
    CHECKOUT_SESSION_TTL_MINUTES: int = 30
    STRIPE_EVENT_MAX_ATTEMPTS: int = 10
    MAIL_BACKEND: str = "file"
    MAIL_OUTBOX_DIR: str = "var/mail"
    MAIL_SERVER: str = "localhost"
    MAIL_PORT: int = 1025
    MAIL_USE_TLS: bool = False
    MAIL_USE_SSL: bool = False
    MAIL_USERNAME: str = ""
    MAIL_PASSWORD: str = ""
    MAIL_DEFAULT_SENDER: str = "Codex <no-reply@localhost>"
    EMAIL_MAX_ATTEMPTS: int = 5
    PLATFORM_NAME: str = "Codex"
    PLATFORM_SUPPORT_EMAIL: str = "support@localhost"
    PLAYBACK_FLUSH_INTERVAL_SECONDS: int = 15
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: str = ""  # empty: console in development, json otherwise
    METRICS_TOKEN: str = ""
    API_DOCS_ENABLED: bool = True
    PROMETHEUS_MULTIPROC_DIR: str = ""
    FLOWER_BASIC_AUTH: str = ""
    WEB_CONCURRENCY: int = 2
    PORT: int = 5000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Build a Config from ``environ`` (default ``os.environ``), then apply ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name)
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        if values.get("APP_ENV") == "production":
            values.setdefault("API_DOCS_ENABLED", False)  # opt-in there (security.md §12)
        config = cls(**values)
        config.normalise()
        return config

    def normalise(self) -> None:
        if not self.LOG_FORMAT:
            self.LOG_FORMAT = "console" if self.APP_ENV == "development" else "json"
        self.PUBLIC_BASE_URL = self.PUBLIC_BASE_URL.rstrip("/")
        self.FRONTEND_URL = self.FRONTEND_URL.rstrip("/")
        self.DEFAULT_CURRENCY = self.DEFAULT_CURRENCY.lower()
        self.SUPPORTED_CURRENCIES = [c.lower() for c in self.SUPPORTED_CURRENCIES]
        self.S3_ENDPOINT_URL = self.S3_ENDPOINT_URL.rstrip("/")
        self.S3_PUBLIC_ENDPOINT_URL = self.S3_PUBLIC_ENDPOINT_URL.rstrip("/")

    # ---- derived values -------------------------------------------------------------------

    @property
    def payment_provider(self) -> str:
        """The provider that ``PAYMENT_PROVIDER`` resolves to: ``stripe`` or ``local``."""
        if self.PAYMENT_PROVIDER == "auto":
            return "stripe" if self.STRIPE_SECRET_KEY else "local"
        return self.PAYMENT_PROVIDER

    @property
    def s3_public_endpoint_url(self) -> str:
        """The S3 endpoint presigned URLs name (empty: AWS's own)."""
        return self.S3_PUBLIC_ENDPOINT_URL or self.S3_ENDPOINT_URL

    @property
    def media_hard_time_limit(self) -> int:
        return media_hard_time_limit(self.MEDIA_TASK_SOFT_TIME_LIMIT)

    @property
    def broker_visibility_timeout(self) -> int:
        # Above the longest hard limit plus the longest countdown (jobs.md §2).
        return max(10800, self.MEDIA_TASK_SOFT_TIME_LIMIT + 3900)

    def validate(self) -> None:
        """Raise ConfigError for values that are wrong everywhere, and for production rules."""
        if self.APP_ENV not in {"development", "test", "production"}:
            raise ConfigError("APP_ENV must be development, test or production")
        if self.STORAGE_BACKEND not in {"local", "s3"}:
            raise ConfigError("STORAGE_BACKEND must be local or s3")
        if self.MAIL_BACKEND not in {"file", "smtp", "memory"}:
            raise ConfigError("MAIL_BACKEND must be file, smtp or memory")
        if self.PAYMENT_PROVIDER not in {"auto", "stripe", "local"}:
            raise ConfigError("PAYMENT_PROVIDER must be auto, stripe or local")
        if self.PAYMENT_PROVIDER == "stripe" and not self.STRIPE_SECRET_KEY:
            raise ConfigError("STRIPE_SECRET_KEY is required when PAYMENT_PROVIDER=stripe")
        if not 1 <= self.MEDIA_MAX_ATTEMPTS <= 10:
            raise ConfigError("MEDIA_MAX_ATTEMPTS must be between 1 and 10")
        if not 30 <= self.CHECKOUT_SESSION_TTL_MINUTES <= 1440:
            raise ConfigError("CHECKOUT_SESSION_TTL_MINUTES must be between 30 and 1440")
        if self.LOG_FORMAT not in {"console", "json"}:
            raise ConfigError("LOG_FORMAT must be console or json")
        if self.TRUSTED_PROXY_COUNT is not None and self.TRUSTED_PROXY_COUNT < 0:
            raise ConfigError("TRUSTED_PROXY_COUNT must be 0 or more")
        if self.UPLOAD_BODY_IDLE_SECONDS < 0:
            raise ConfigError("UPLOAD_BODY_IDLE_SECONDS must be 0 or more")
        if self.STORAGE_BACKEND == "s3":
            self._validate_s3()
        if self.APP_ENV == "production":
            self._validate_production()

    def _validate_s3(self) -> None:
        for name in ("S3_ENDPOINT_URL", "S3_PUBLIC_ENDPOINT_URL"):
            value = getattr(self, name)
            if value and not _is_http_url(value):
                raise ConfigError(f"{name} must be an http(s) URL with a host, without a path (or empty)")
        if not self.S3_BUCKET:
            raise ConfigError("S3_BUCKET must be set when STORAGE_BACKEND=s3")
        if bool(self.AWS_ACCESS_KEY_ID) != bool(self.AWS_SECRET_ACCESS_KEY):
            # Half a pair would silently fall back to boto3's default chain (other credentials).
            raise ConfigError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (or both empty)")

    def _validate_production(self) -> None:
        if self.SECRET_KEY == "dev-insecure-change-me" or len(self.SECRET_KEY) < 32:
            raise ConfigError("SECRET_KEY must be set to at least 32 characters in production")
        if self.payment_provider == "local":
            raise ConfigError("PAYMENT_PROVIDER must not resolve to local in production")
        if not self.STRIPE_WEBHOOK_SECRET:
            raise ConfigError("STRIPE_WEBHOOK_SECRET must be set in production")
        if DEFAULT_WEBHOOK_SECRET in self.STRIPE_WEBHOOK_SECRET:
            # Rotation lists several secrets: the public default must not be one of them either.
            raise ConfigError("STRIPE_WEBHOOK_SECRET must not contain the default secret in production")
        if self.STORAGE_BACKEND != "s3":
            raise ConfigError("STORAGE_BACKEND must be s3 in production")
        if self.MAIL_BACKEND != "smtp":
            raise ConfigError("MAIL_BACKEND must be smtp in production")
        if self.s3_public_endpoint_url and not self.s3_public_endpoint_url.startswith("https://"):
            # Browsers and players get these URLs from an https page; the internal endpoint
            # (S3_ENDPOINT_URL on a private network) may stay http when a public one is set.
            raise ConfigError(
                "S3_PUBLIC_ENDPOINT_URL (or S3_ENDPOINT_URL when it is empty) must be https in production"
            )
        if not self.PUBLIC_BASE_URL.startswith("https://"):
            raise ConfigError("PUBLIC_BASE_URL must be https in production")
        if not self.FRONTEND_URL.startswith("https://"):
            raise ConfigError("FRONTEND_URL must be https in production")
        if not self.FLOWER_BASIC_AUTH:
            raise ConfigError("FLOWER_BASIC_AUTH must be set in production")
        if not self.CORS_ORIGINS:
            raise ConfigError("CORS_ORIGINS must list the allowed origins in production")
        if any("*" in origin for origin in self.CORS_ORIGINS):
            raise ConfigError("CORS_ORIGINS must not contain a wildcard (*) in production")
        if not all(origin.startswith("https://") for origin in self.CORS_ORIGINS):
            raise ConfigError("CORS_ORIGINS must hold only https origins in production")
        if self.TRUSTED_PROXY_COUNT is None:
            # A wrong count lets clients choose their IP (rate-limit keys): no silent default.
            raise ConfigError("TRUSTED_PROXY_COUNT must be set explicitly in production (0 without a proxy)")

    def as_flask_config(self) -> dict[str, Any]:
        """Everything as a mapping for ``app.config`` (same names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_dotenv(directory: Path | None = None) -> bool:
    """Load ``directory/.env`` (default: the working directory) into ``os.environ`` in development.

    Development means ``APP_ENV`` unset or ``development`` in the real environment; variables
    already set there win over the file. The app factory and ``migrations/env.py`` both call this,
    so ``alembic`` reads the same settings as the app. True when the file set something.
    """
    if os.environ.get("APP_ENV", "development") != "development":
        return False
    try:
        import dotenv
    except ImportError:  # pragma: no cover - python-dotenv is a dependency
        return False
    return dotenv.load_dotenv((directory or Path.cwd()) / ".env", override=False)


def media_hard_time_limit(soft_limit: int) -> int:
    """``media.ingest``'s hard time limit (spec README §6: soft + 300), also ffmpeg's RLIMIT_CPU."""
    return soft_limit + 300


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and parts.path in {"", "/"} and not parts.query


def _coerce(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation).removesuffix(" | None")  # optional: None only when the variable is absent
    try:
        if kind == "int":
            return int(raw.strip())
        if kind == "bool":
            return _bool(raw)
        if kind.startswith("list"):
            return _csv(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid: {exc}") from None
    return raw.strip()
