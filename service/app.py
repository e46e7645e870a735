"""The Flask application factory: a table of contents of `register_*` calls."""

from __future__ import annotations

import gc
import logging

from flask import Flask

from pipeline.runtime import Runtime, bootstrap
from pipeline.settings import Settings
from reporting.rates import shipped_history
from service import dashboard, extensions, ops, report_api, session, webhook
from service.errors import register_error_handlers


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the web app on `runtime` (bootstrapped from `settings`, or from the
    environment). Without a webhook secret it refuses to start (SettingsError).

    Built from the environment (`create_app()`: the web process, under gunicorn), it
    also `settle`s the process once built."""
    from_environment = settings is None and runtime is None
    runtime = runtime or bootstrap(settings)
    settings = runtime.settings.require_webhook_secret()
    app = Flask(__name__)
    register_settings(app, runtime)
    register_sessions(app, settings)
    register_blueprints(app)
    register_error_handlers(app)
    register_logging(app)
    app.wsgi_app = webhook.WebhookEndpoint(app)  # type: ignore[method-assign]
    if from_environment:
        settle()
    return app


def settle() -> None:
    """Read the shipped exchange-rate history, then move every object the process holds
    (modules, the app, the history) out of the cyclic garbage collector's reach
    (`gc.freeze()`). A converted report allocates some 100,000 objects (rows, buckets,
    exact sums), and the full collections they trigger traversed those long-lived
    objects each time (see `bench/report_latency.py`)."""
    shipped_history()
    gc.collect()
    gc.freeze()


def register_settings(app: Flask, runtime: Runtime) -> None:
    # One byte over the limit is read, so a chunked body over it is told apart (a 413).
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    extensions.register(app, runtime)


def register_sessions(app: Flask, settings: Settings) -> None:
    """Dashboard sign-in: session cookies signed with a key derived from OPS_TOKEN."""
    session.configure(app, settings.ops_token)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(webhook.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(report_api.bp)
    app.register_blueprint(dashboard.bp)


def register_logging(app: Flask) -> None:
    if not app.debug and not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
