"""What a browser needs, over real HTTP: API docs that work offline, with an Authorize button
for both key styles."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests


SCHEMES = {"ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}, "BearerAuth": {"type": "http", "scheme": "bearer"}}
PUBLIC = {"GET /healthz", "POST /blobs/upload", "GET /blobs/download"}  # no key: health, and signed URLs


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
