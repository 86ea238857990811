"""Codex application factory: config -> logging -> extensions -> blueprints -> error handlers."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config, load_dotenv


def create_app(config: Config | dict[str, Any] | None = None, *, role: str = "web") -> Flask:
    """Build the Flask app.

    ``config``: a ``Config``, a dict of overrides applied on top of the environment, or ``None``
    (environment only; a ``.env`` file is loaded in development). ``role`` is ``web`` or
    ``worker`` and picks the database timeouts.
    """
    if config is None or isinstance(config, dict):
        if config is None:
            load_dotenv()  # development only; real environment variables win
        config = Config.from_env(**(config or {}))
    config.validate()

    from app.logging import configure_logging

    configure_logging(config.LOG_LEVEL, config.LOG_FORMAT)

    app = CodexFlask(__name__, template_folder=str(Path(__file__).resolve().parent.parent / "templates"))
    app.config.update(config.as_flask_config())
    app.config["TESTING"] = config.APP_ENV == "test"
    app.extensions["codex_config"] = config

    _init_extensions(app, role)
    _register_blueprints(app)
    app.refuse_async_views()
    if config.FAST_PATH_ENABLED:
        from app.commerce import webhook_fast_path

        webhook_fast_path.install(app)  # stored webhook deliveries answered below Flask (see the module)
    if config.FAST_PATH_ENABLED and app.extensions["near_cache"] is not None:
        from app.access import fast_path
        from app.catalog import fast_path as catalog_fast_path
        from app.identity import fast_path as me_fast_path

        catalog_fast_path.install(app)  # a warm anonymous catalogue page answered below Flask
        me_fast_path.install(app)  # a warm GET /auth/me answered below Flask (see the module)
        fast_path.install(app)  # warm heartbeats and stream URLs answered below Flask (see the module)
    if config.TRUSTED_PROXY_COUNT:  # outermost: everything below sees the client's address
        n = config.TRUSTED_PROXY_COUNT
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    if config.FAST_PATH_ENABLED:
        from app.system import fast_path as health_fast_path

        health_fast_path.install(app)  # the probes' GET /health, outermost (see the module)

    from app.cli import codex_cli

    app.cli.add_command(codex_cli)
    return app


class CodexFlask(Flask):
    """Flask without the per-call coroutine check: Codex has no ``async def`` views or hooks.

    ``ensure_sync`` runs ``inspect.iscoroutinefunction`` on every hook, view and flask-smorest
    wrapper of every request (about ten calls). ``refuse_async_views`` checks once, at start-up,
    that nothing registered needs it.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return func

    def refuse_async_views(self) -> None:
        registered: list[Any] = list(self.view_functions.values())
        for hooks in (self.before_request_funcs, self.after_request_funcs, self.teardown_request_funcs):
            for funcs in hooks.values():
                registered.extend(funcs)
        for func in registered:
            view_class = getattr(func, "view_class", None)
            methods = [getattr(view_class, m, None) for m in dir(view_class)] if view_class is not None else []
            for candidate in (func, *methods):
                if inspect.iscoroutinefunction(inspect.unwrap(candidate)) if callable(candidate) else False:
                    raise TypeError(f"async views are not supported: {candidate!r}")


def _init_extensions(app: Flask, role: str) -> None:
    from app import db, errors, http, jobs, ratelimit, storage
    from app.api import Api, api_settings
    from app.extensions import mail, near_cache_for, redis_client

    db.init_app(app, role=role)
    app.extensions["redis"] = redis_client(app.config["REDIS_URL"])
    app.extensions["broker_redis"] = redis_client(app.config["CELERY_BROKER_URL"])
    app.extensions["near_cache"] = near_cache_for(app)
    storage.init_app(app)
    mail.init_app(app)

    http.register_request_id(app)
    ratelimit.init_app(app)  # limits first: 429 before the body checks (README §3.4)
    from app.identity.sessions import init_app as init_auth

    init_auth(app)  # route limits before the body hooks (README §3.4); session sliding
    http.register_request_hooks(app)
    ratelimit.init_headers(app)  # (runs before http's finishing hook, which completes its answer)
    _wire_layers(app)

    app.config.update(api_settings(app))
    api = Api(app)
    app.extensions["api"] = api
    errors.register_error_handlers(app)

    celery_app = jobs.celery_init_app(app)
    app.extensions["task_sender"] = jobs.make_task_sender(celery_app)


def _wire_layers(app: Flask) -> None:
    """Hand each lower package the answers only a higher one can give, so imports keep pointing
    down (docs/architecture.md lists these; tests/foundation/test_import_graph.py holds the rule)."""
    from app.content.for_media import supply as supply_media
    from app.identity.service import user_name
    from app.media.service import supply_upload_guard
    from app.notifications.branding import register_lookups
    from app.orgs.branding import branding_for
    from app.orgs.for_identity import supply as supply_identity

    supply_identity()  # sign-up by org slug, /auth/me memberships
    supply_media()  # MEDIA_IN_USE, content snapshots of a changed media item
    supply_upload_guard()  # the local upload route refuses pinned originals
    # An email needs the org's branding and the user's name at send time.
    register_lookups(app, branding=branding_for, user_name=user_name)


def _register_blueprints(app: Flask) -> None:
    from app.commerce import provider_link
    from app.commerce.routes import webhook_bp
    from app.payments.routes import bp as local_payments_bp
    from app.storage.routes import bp as storage_bp
    from app.system.docs import init_app as init_docs
    from app.system.routes import bp as system_bp

    app.register_blueprint(system_bp)
    app.register_blueprint(storage_bp)
    app.register_blueprint(webhook_bp)
    app.register_blueprint(local_payments_bp)  # answers 404 unless the provider is local
    init_docs(app)  # Swagger UI, unless API_DOCS_ENABLED is false
    provider_link.init_app(app)  # the payments adapter's events and lookups go to commerce
    api = app.extensions["api"]
    for blueprint in _api_blueprints():
        api.register_blueprint(blueprint)


def _api_blueprints() -> list[Any]:
    """Every flask-smorest blueprint under ``/api/v1``; each domain adds its own here."""
    from app.access.routes import blp as access_blp
    from app.catalog.routes import blp as catalog_blp
    from app.commerce.routes import admin_blp as stripe_events_blp
    from app.commerce.routes import blp as commerce_blp
    from app.content.routes import blp as content_blp
    from app.dashboard.routes import blp as dashboard_blp
    from app.identity.routes import blp as auth_blp
    from app.media.routes import blp as media_blp
    from app.orgs.routes import blp as orgs_blp

    return [
        auth_blp,
        orgs_blp,
        media_blp,
        content_blp,
        catalog_blp,
        commerce_blp,
        access_blp,
        dashboard_blp,
        stripe_events_blp,
    ]
