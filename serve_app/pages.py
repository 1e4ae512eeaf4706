"""The browser pages under ``/ui/``: Fathom's own scripts and styles, and wavesurfer.js from npm.

The pages are plain ES modules. ``serve_app/ui/package.json`` (with its lockfile) names the
front-end packages; the install step runs ``npm ci`` there, and the Ingress serves
``node_modules/wavesurfer.js/dist`` as ``/ui/vendor/wavesurfer/``. Every other path under
``/ui/`` answers the one HTML page, whose router draws the view the path names, so a page's URL
can be bookmarked and reloaded.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

from schemas.settings import Settings

UI_DIR = Path(__file__).parent / "ui"
SRC_DIR = UI_DIR / "src"
WAVESURFER_DIR = UI_DIR / "node_modules" / "wavesurfer.js" / "dist"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fathom</title>
<link rel="stylesheet" href="{root}/ui/assets/style.css">
<script type="importmap">{importmap}</script>
<script>window.FATHOM_UI = {config};</script>
</head>
<body>
<header class="topbar">
  <a class="brand" href="{root}/ui/" data-link>Fathom</a>
  <nav id="nav"></nav>
  <span id="whoami"></span>
</header>
<main id="view"><p class="muted">Loading…</p></main>
<script type="module" src="{root}/ui/assets/app.js"></script>
</body>
</html>
"""

MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fathom: pages not installed</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The review pages are not installed</h1>
<p>Their front-end packages come from npm. Install Node.js and npm, then run <code>make install</code>
(it runs <code>npm ci</code> in <code>serve_app/ui</code>) and restart Fathom.</p>
<p>The REST API works without them: <a href="{root}/docs">/docs</a>.</p>
</body></html>
"""


def installed() -> bool:
    return (WAVESURFER_DIR / "wavesurfer.esm.js").is_file()


def install_pages(app: FastAPI, settings: Settings | None) -> None:
    """Mount the assets and the page; without the npm packages the page says how to install them."""
    app.mount("/ui/assets", StaticFiles(directory=SRC_DIR), name="ui-assets")
    if installed():
        app.mount("/ui/vendor/wavesurfer", StaticFiles(directory=WAVESURFER_DIR), name="ui-wavesurfer")
    test_hooks = bool(settings and settings.ui_test_hooks)

    async def page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        if not installed():
            return HTMLResponse(MISSING.format(root=html.escape(root)), status_code=503)
        vendor = f"{root}/ui/vendor/wavesurfer"
        importmap = {"imports": {
            "wavesurfer.js": f"{vendor}/wavesurfer.esm.js",
            "wavesurfer.js/plugins/": f"{vendor}/plugins/",
        }}
        config = {"root": root, "testHooks": test_hooks}
        # JSON inside <script>: "</" is escaped so no value can close the element.
        as_js = lambda value: json.dumps(value).replace("</", "<\\/")  # noqa: E731
        body = PAGE.format(root=html.escape(root), importmap=as_js(importmap), config=as_js(config))
        return HTMLResponse(body, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                           "Referrer-Policy": "same-origin"})

    app.add_route("/ui", page, include_in_schema=False)
    app.add_route("/ui/", page, include_in_schema=False)
    app.add_route("/ui/{path:path}", page, include_in_schema=False)
