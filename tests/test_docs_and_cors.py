"""What a browser needs, over real HTTP: API docs that work offline, with an Authorize button
for both key styles, and CORS for the configured origin only."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from schemas.settings import Settings
from serve_app.app import create_api
from tests.factories import DASHBOARD_ORIGIN

SCHEMES = {"ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}, "BearerAuth": {"type": "http", "scheme": "bearer"}}
PUBLIC = {"GET /healthz", "POST /blobs/upload", "GET /blobs/download"}  # no key: health, and signed URLs
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


# --- docs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page, kinds", [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})])
def test_docs_pages_load_everything_from_fathom(platform, page, kinds):
    r = requests.get(platform.base_url + page, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(r.text)
    assert parser.urls, r.text
    assert not re.search(r"https?://", r.text.replace("window.location.origin", "")), "an absolute URL in the page"
    seen = set()
    for url in parser.urls:
        absolute = urljoin(r.url, url)
        assert urlsplit(absolute).netloc == urlsplit(platform.base_url).netloc, url
        asset = requests.get(absolute, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 0, url
        kind = asset.headers["content-type"]
        expected = {".js": "javascript", ".css": "text/css", ".png": "image/png"}[url[url.rindex("."):]]
        assert expected in kind, (url, kind)
        seen |= {k for k in kinds if k in kind}
    assert seen == kinds
    assert requests.head(platform.base_url + page, timeout=30).status_code == 200
    spec = requests.get(platform.base_url + "/openapi.json", timeout=30)
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Fathom"


def test_openapi_declares_both_key_styles_on_every_authenticated_operation(platform):
    spec = requests.get(platform.base_url + "/openapi.json", timeout=30).json()
    schemes = spec["components"]["securitySchemes"]
    assert {name: {k: v for k, v in s.items() if k != "description"} for name, s in schemes.items()} == SCHEMES
    either = [{"ApiKeyAuth": []}, {"BearerAuth": []}]  # alternatives: one of them suffices
    operations = {f"{m.upper()} {p}": op for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert PUBLIC <= set(operations)
    for name, op in operations.items():
        if name in PUBLIC:
            assert "security" not in op, name
        else:
            assert op.get("security") == either, name
            assert "401" in op["responses"], name
    assert len(operations) - len(PUBLIC) > 40


@pytest.mark.parametrize("route, header", [("/api/v1/datasets", "X-API-Key"), ("/api/v3/custom_models", "Authorization")])
def test_try_it_out_sends_what_the_api_accepts(org, route, header):
    """Swagger UI sends the scheme's header: each works on both APIs, and 401s keep their shapes."""
    value = org.key if header == "X-API-Key" else f"Bearer {org.key}"
    r = requests.get(org.base_url + route, headers={header: value}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.get(org.base_url + route, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    body = r.json()
    if route.startswith("/api/v3"):
        assert body["error_code"] == "MISSING_API_KEY" and set(body) == {"error", "message", "error_code", "details"}
    else:
        assert set(body) == {"detail"} and isinstance(body["detail"], str)


# --- CORS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route, header", [("/api/v1/datasets", "X-API-Key"), ("/api/v3/custom_models", "Authorization")])
def test_allowed_origin_gets_cors_headers(org, route, header):
    pre = requests.options(
        org.base_url + route,
        headers={"Origin": DASHBOARD_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": f"{header.lower()}, content-type"},
        timeout=30,
    )
    assert pre.status_code == 200, pre.text
    assert pre.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert header.lower() in pre.headers["Access-Control-Allow-Headers"].lower()
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"

    value = org.key if header == "X-API-Key" else f"Bearer {org.key}"
    r = requests.get(org.base_url + route, headers={header: value, "Origin": DASHBOARD_ORIGIN}, timeout=30)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {h.lower() for h in (*RATE_HEADERS, "Retry-After")} <= exposed
    if route.startswith("/api/v3"):
        assert all(h in r.headers for h in RATE_HEADERS)
    denied = requests.get(org.base_url + route, headers={"Origin": DASHBOARD_ORIGIN}, timeout=30)
    assert denied.status_code == 401 and denied.headers["Access-Control-Allow-Origin"] == DASHBOARD_ORIGIN


def test_other_origins_get_no_cors_headers(org):
    url = org.base_url + "/api/v1/datasets"
    for origin in ("https://evil.example.com", DASHBOARD_ORIGIN + ":8443", "http://dashboard.example.com"):
        pre = requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "GET"}, timeout=30)
        assert pre.status_code == 400 and "Access-Control-Allow-Origin" not in pre.headers, origin
        r = requests.get(url, headers={"X-API-Key": org.key, "Origin": origin}, timeout=30)
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers, origin  # the browser withholds it
    plain = requests.get(url, headers={"X-API-Key": org.key}, timeout=30)  # no Origin: as without CORS
    assert not any(h.lower().startswith("access-control-") for h in plain.headers)


def test_cors_is_off_by_default_and_a_wildcard_never_allows_credentials():
    from fastapi.testclient import TestClient

    pre = {"Origin": DASHBOARD_ORIGIN, "Access-Control-Request-Method": "GET"}
    off = TestClient(create_api(Settings()))
    assert Settings().cors_allowed_origins == []
    r = off.options("/healthz", headers=pre)
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    wildcard = TestClient(create_api(Settings(cors_allowed_origins="*")))
    r = wildcard.options("/healthz", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers


def test_cors_origins_setting():
    s = Settings(cors_allowed_origins=" https://a.example.com/, http://localhost:3000")
    assert s.cors_allowed_origins == ["https://a.example.com", "http://localhost:3000"]
    assert Settings(**{"cors_allowed_origins": s.to_env()["FATHOM_CORS_ALLOWED_ORIGINS"]}).cors_allowed_origins == s.cors_allowed_origins
    assert Settings(cors_allowed_origins='["https://b.example.com"]').cors_allowed_origins == ["https://b.example.com"]
    for bad in ("dashboard.example.com", "https://a.example.com/app", "ftp://a.example.com"):
        with pytest.raises(ValueError, match="scheme://host"):
            Settings(cors_allowed_origins=bad)
