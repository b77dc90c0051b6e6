"""The one factory that builds the Litestar app from settings (and, in tests, given resources)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp

from app.admin.controller import AdminController
from app.auth import BearerAuthMiddleware
from app.batches.controller import BatchController
from app.bodies import BoundedRequest
from app.datasets.controller import DatasetController
from app.deps import provide_db_session, provide_principal, provide_settings, provide_store
from app.errors import EXCEPTION_HANDLERS
from app.events.controller import EventController
from app.events.fanout import EventChannels
from app.files.batch import upload_batch
from app.files.controller import FileController
from app.files.links import FileLinkController
from app.files.routing import filename_segment_middleware
from app.idle import idle_body_timeout
from app.jobs.controller import JobController
from app.keys.controller import KeyController
from app.metrics import metrics, metrics_lifespan, observe_refusals
from app.me.controller import me
from app.openapi import document_app, openapi_config
from app.ops.controller import OpsController
from app.quotas.controller import QuotaController
from app.quotas.ratelimit import rate_limits
from app.resources import Resources
from app.tus.controller import TusController
from app.unread import close_unread_bodies
from app.uploads.controller import UploadController
from app.web.controller import WebConfigController, WebController
from app.web.docs import docs_router, render_plugins
from db.logs import configure_logging
from db.settings import Settings

TUS_REQUEST_HEADERS = [
    "Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Offset", "Upload-Metadata",
    "Upload-Checksum", "Upload-Concat", "X-HTTP-Method-Override", "X-Requested-With",
]
TUS_RESPONSE_HEADERS = [
    "Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
    "Upload-Offset", "Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Expires", "Upload-Concat",
    "Sluice-File-Id", "Sluice-Job-Id",
]
"""What a browser's tus client sends and must be allowed to read on another origin."""
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/metrics$", "^/schema"]


def create_app(settings: Settings, resources: Resources | None = None) -> Litestar:
    """Build the app; resources passed in are used as they are and left open for their owner."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if resources is not None:
            app.state.resources = resources
            yield
            return
        owned = Resources.from_settings(settings)
        app.state.resources = owned
        try:
            yield
        finally:
            await owned.aclose()

    prometheus = PrometheusConfig(app_name="sluice", prefix="sluice", group_path=True, exclude=PUBLIC_PATHS)
    limits, stores = rate_limits(settings, PUBLIC_PATHS)
    app = Litestar(
        route_handlers=[OpsController, *([] if settings.metrics_port else [metrics]), FileController, FileLinkController, upload_batch, UploadController, TusController, JobController, BatchController, DatasetController, EventController, AdminController, KeyController, QuotaController, me, WebConfigController, WebController],
        plugins=[EventChannels.from_settings(settings)],
        lifespan=[lifespan, functools.partial(metrics_lifespan, settings=settings)],
        middleware=[
            prometheus.middleware,
            DefineMiddleware(BearerAuthMiddleware, exclude=PUBLIC_PATHS, exclude_from_auth_key="exclude_from_auth"),
            *limits,
            idle_body_timeout(settings.body_idle_timeout),
        ],
        dependencies={
            "db_session": Provide(provide_db_session),
            "store": Provide(provide_store, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=BoundedRequest,
        stores=stores,
        openapi_config=openapi_config(render_plugins(), docs_router()),
        cors_config=_cors(settings),
        on_startup=[lambda: configure_logging(settings.log_level)] if resources is None else [],
    )
    document_app(app)
    return app


def _cors(settings: Settings) -> CORSConfig | None:
    if not settings.cors_origins:
        return None
    # Keys travel in a header, never in cookies: no credentials mode, so "*" exposes nothing.
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Content-SHA256", "X-Chunk-SHA256", *TUS_REQUEST_HEADERS],
        expose_headers=TUS_RESPONSE_HEADERS,
        max_age=600,
    )


def app_from_env() -> ASGIApp:
    """Entry point for ASGI servers (``uvicorn --factory app.asgi:app_from_env``).

    Litestar middleware runs after routing, so the filename fix-up wraps the whole app.
    """
    return close_unread_bodies(filename_segment_middleware(observe_refusals(create_app(Settings.from_env()))))
