"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from serve_app.deps import BlobsDep, SessionDep
from serve_app.errors import v1_errors

router = APIRouter(tags=["health"])


@router.get("/healthz", responses=v1_errors(503))
def healthz(session: SessionDep, blobs: BlobsDep) -> dict[str, str]:
    """Database and blob store reachable."""
    session.execute(text("SELECT 1"))
    blobs.ping()
    return {"status": "ok"}
