"""FastAPI dependencies: settings, database session, blob store, the calling key."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cluster.accounts import AuthError, Principal, authenticate
from cluster.blob_store import BlobStore
from cluster.db import open_session
from schemas.settings import Settings
from serve_app.errors import ApiError

log = logging.getLogger("fathom.api")

V3_AUTH_CODES = {"missing": "MISSING_API_KEY", "invalid": "INVALID_API_KEY", "expired": "INVALID_API_KEY", "revoked": "KEY_REVOKED"}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = open_session(request.app.state.settings.database_url)
    try:
        yield session
    finally:
        session.close()


def get_blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


def get_dispatcher_wake(request: Request) -> Callable[[str], None]:
    """Tells the Dispatcher that work was queued (``"inference"``, ``"dataset_audio"`` or
    ``"evaluation"``), so it claims it now rather than at its next poll (which backs off to
    ``dispatch_idle_poll_s`` on an idle platform). A lost wake costs only that poll: it never fails
    the request."""
    handle = getattr(request.app.state, "dispatcher", None)  # None: the API without Serve

    def wake(work: str) -> None:
        if handle is None:
            return
        try:
            handle.wake.remote(work)
        except Exception:
            log.warning("could not wake the dispatcher; it claims the %s work at its next poll", work, exc_info=True)

    return wake


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
WakeDispatcherDep = Annotated[Callable[[str], None], Depends(get_dispatcher_wake)]


def presented_key(request: Request) -> str | None:
    """``X-API-Key`` (v1) or ``Authorization: Bearer`` (v3); both APIs accept both."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


# The two ways a key is presented, declared to OpenAPI (the Authorize button of /docs). With
# auto_error off they never answer themselves: ``get_principal`` reads the key and answers 401
# in the API's own shape.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyAuth", description="v1 style; v3 accepts it too.", auto_error=False
)
BEARER = HTTPBearer(scheme_name="BearerAuth", description="v3 style; v1 accepts it too.", auto_error=False)


def get_principal(
    request: Request,
    session: SessionDep,
    _api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Principal:
    """The calling key, read by ``presented_key`` (the two declared schemes only document it)."""
    try:
        principal = authenticate(session, presented_key(request))
        session.commit()  # end the read: the route may await other work before it needs the database
    except AuthError as e:
        raise ApiError(401, str(e), error_code=V3_AUTH_CODES[e.code], headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def check_scope(principal: Principal, scope: str, *alternatives: str) -> Principal:
    """403 naming the scope (or every alternative) unless the key carries ``scope`` or one of ``alternatives``."""
    scopes = (scope, *alternatives)
    if any(principal.allows(s) for s in scopes):
        return principal
    if alternatives:
        message, details = f"API key lacks one of the scopes {', '.join(repr(s) for s in scopes)}", {"required_scopes": list(scopes)}
    else:
        message, details = f"API key lacks the '{scope}' scope", {"required_scope": scope}
    raise ApiError(403, message, error_code="INSUFFICIENT_SCOPE", details={**details, "key_scopes": sorted(principal.scopes)})


def require(scope: str, *alternatives: str):
    """Dependency factory: the key must carry ``scope`` or one of ``alternatives`` (403 otherwise)."""

    def _check(principal: PrincipalDep) -> Principal:
        return check_scope(principal, scope, *alternatives)

    return _check


def fetch_window(session: Session, query: Select, order_by: tuple[Any, ...], offset: int, limit: int) -> tuple[list[Any], int]:
    """(rows ``offset`` .. ``offset + limit`` of ``query`` in ``order_by``, total rows): both API shapes page with it."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.order_by(*order_by).offset(offset).limit(limit)).all()
    return list(rows), total


class PageParams:
    """v1 pagination: 1-based ``page`` and ``page_size``."""

    def __init__(
        self,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    ):
        self.page = page
        self.page_size = page_size

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def fetch(self, session: Session, query: Select, *order_by: Any) -> dict[str, Any]:
        """One page of ``query`` in the v1 envelope (items are ORM rows; the response model converts)."""
        rows, total = fetch_window(session, query, order_by, self.offset, self.page_size)
        return {"items": rows, "total": total, "page": self.page, "page_size": self.page_size}


PageDep = Annotated[PageParams, Depends()]


@dataclass(frozen=True)
class Window:
    """v3 pagination: ``offset``/``limit`` (or 1-based ``page``/``per_page``)."""

    offset: int
    limit: int

    def fetch(self, session: Session, query: Select, *order_by: Any) -> tuple[list[Any], int]:
        """(rows of this window, total rows) of ``query``; the route builds its own envelope."""
        return fetch_window(session, query, order_by, self.offset, self.limit)


def window_params(default: int, maximum: int):
    """``offset``/``limit`` or ``page``/``per_page`` (1-based) as one dependency."""

    def _window(
        # Plain defaults, not Annotated: the bounds come from this closure, which string annotations cannot see.
        offset: int | None = Query(None, ge=0, le=10_000_000),
        limit: int | None = Query(None, ge=1, le=maximum, description=f"Default {default}."),
        page: int | None = Query(None, ge=1, le=1_000_000, description="1-based; instead of offset."),
        per_page: int | None = Query(None, ge=1, le=maximum, description="Same as limit."),
    ) -> Window:
        if offset is not None and page is not None:
            raise ApiError(
                422,
                "Give offset or page, not both",
                error_code="VALIDATION_ERROR",
                details={"offset": offset, "page": page},
            )
        size = limit or per_page or default
        return Window(offset=offset if offset is not None else ((page or 1) - 1) * size, limit=size)

    return Depends(_window)
