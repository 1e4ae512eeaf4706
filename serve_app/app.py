"""The Serve application: a FastAPI ingress plus model and dispatch deployments.

``build_app`` is the import path of ``cluster/serve_config.yaml`` and of ``make run``::

    Ingress (FastAPI, stateless, autoscaled)
      ├── Detector   (batched, multiplexed detector models; GPU when present)
      └── Dispatcher (claims queued work from the database and feeds Detector / Ray Data)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from cluster.blobs import make_blob_store
from cluster.db import init_schema
from cluster.gpus import use_gpu
from schemas.settings import Settings
from serve_app.deployments.detector import Detector
from serve_app.deployments.transcriber import Transcriber
from serve_app.dispatcher import Dispatcher
from serve_app.docs import install_docs
from serve_app.errors import install_error_handlers
from serve_app.pages import install_pages
from serve_app.rate_limits import RATE_HEADERS, RateLimitHeaders
from serve_app.routes import (
    annotations,
    api_keys,
    blobs,
    custom_models,
    dataset_audio,
    datasets,
    evaluations,
    health,
    inference_jobs,
    models,
    registry,
    stt,
    training_jobs,
    webhooks,
)

log = logging.getLogger("fathom.app")

APP_NAME = "fathom"


class AppArgs(BaseModel):
    """Builder arguments (``args:`` in the Serve config). Settings not given here come from FATHOM_* env."""

    settings: dict[str, Any] = Field(default_factory=dict)
    detector_user_config: dict[str, Any] | None = Field(
        None, description="Detector batching (max_batch_size, batch_wait_timeout_s); the Serve config's user_config wins."
    )
    transcriber_user_config: dict[str, Any] | None = Field(
        None, description="Transcriber batching (max_batch_size, batch_wait_timeout_s); the Serve config's user_config wins."
    )

    def build_settings(self) -> Settings:
        return Settings(**self.settings)


CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_HEADERS = ["Authorization", "X-API-Key", "Content-Type"]


def create_api(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app; ``settings`` adds what depends on them (CORS), None gives the bare routes."""
    app = FastAPI(
        title="Fathom",
        version="0.1.0",
        description="Artifact detection (v1) and custom speech-to-text (v3) on Ray.",
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    if settings is not None and settings.cors_allowed_origins:
        origins = settings.cors_allowed_origins
        # Outermost, so every answer (errors and 429s included) carries the headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,  # credentials are never offered to any origin
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=[*RATE_HEADERS, "Retry-After"],
        )
    for module in (health, api_keys, datasets, dataset_audio, annotations, training_jobs, models, inference_jobs, blobs, registry, evaluations, webhooks):
        app.include_router(module.router)
    app.include_router(custom_models.router)
    app.include_router(stt.router)
    install_pages(app, settings)
    return app


def attach_state(app: FastAPI, settings: Settings, **handles: DeploymentHandle) -> None:
    """Per-process state every route reads through ``serve_app.deps``."""
    instance = init_schema(settings.database_url)
    app.state.settings = settings
    app.state.blobs = make_blob_store(settings, secret=instance.signing_secret.encode())
    for name, handle in handles.items():
        setattr(app.state, name, handle)


@serve.deployment(
    name="Ingress",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=256,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 64},
)
@serve.ingress()
class Ingress:
    def __init__(
        self, args: AppArgs, detector: DeploymentHandle, dispatcher: DeploymentHandle, transcriber: DeploymentHandle
    ):
        self.settings = args.build_settings()
        self.handles = {"detector": detector, "dispatcher": dispatcher, "transcriber": transcriber}

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Called by Serve after ``__init__``: one app per replica, with its state attached."""
        app = create_api(self.settings)
        attach_state(app, self.settings, **self.handles)
        return app


def build_app(args: AppArgs) -> Application:
    settings = args.build_settings()
    init_schema(settings.database_url)
    gpus = use_gpu(settings)

    def options(gpu_fraction: float, user_config: dict[str, Any] | None) -> dict[str, Any]:
        opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": 1, "num_gpus": gpu_fraction if gpus else 0}}
        if user_config is not None:
            opts["user_config"] = user_config
        return opts

    detector = Detector.options(**options(settings.detector_gpu_fraction, args.detector_user_config)).bind(args)
    transcriber = Transcriber.options(
        **options(settings.transcriber_gpu_fraction, args.transcriber_user_config)
    ).bind(args)
    dispatcher = Dispatcher.bind(args, detector, transcriber)
    return Ingress.bind(args, detector, dispatcher, transcriber)
