"""What stands between the web app and a hostile request: a request-body limit, an
allowed-hosts check, and API docs served from local files.

- `BodyLimitMiddleware` answers 413 to a request whose Content-Length exceeds the limit
  before reading any of it, and stops reading a body sent without a length (chunked) as soon
  as it passes the limit.
- The allowed-hosts check (Starlette's TrustedHostMiddleware) answers 400 to a request whose
  Host header is not in the list: a page on another site that points its own name at
  127.0.0.1 ("DNS rebinding") can then neither read runs nor start them.
- `add_local_docs` serves Swagger UI from the files of the `fastapi-offline` package
  (Swagger UI 5, Apache-2.0, in an MIT package) instead of a CDN, so /docs works offline.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted (a scenario's YAML is at most 100,000 characters)."""
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""Host names answered by default (an IPv6 address is written in brackets, as in a URL)."""
DOCS_STATIC = "/static/docs"


class BodyLimitMiddleware:
    """Refuse request bodies above `max_bytes` with 413, without reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    def _message(self) -> bytes:
        return json.dumps({"detail": f"request body larger than this server's limit of "
                                     f"{self.max_bytes:,} bytes"}).encode()

    async def _refuse(self, send: Send) -> None:
        body = self._message()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        exceeded = started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # stop reading: the app sees a disconnect
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def checked_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app answers to the cut body, the client gets 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(send)


def is_local_host(host: str) -> bool:
    """True for loopback names and addresses (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Host names the server answers to: the loopback names, the address it binds to (unless a
    wildcard such as 0.0.0.0) and any given with --allowed-host ('*' allows every host)."""
    def norm(h: str) -> str:
        h = h.strip()
        return f"[{h}]" if ":" in h and not h.startswith("[") else h

    hosts = list(DEFAULT_ALLOWED_HOSTS)
    for h in ([] if bind_host in ("0.0.0.0", "::", "[::]", "") else [bind_host]) + list(extra):
        h = norm(h)
        if h and h not in hosts:
            hosts.append(h)
    return hosts


def add_local_docs(app: FastAPI, title: str) -> None:
    """/docs: Swagger UI from local files (no CDN)."""
    static = resources.files("fastapi_offline").joinpath("static")
    app.mount(DOCS_STATIC, StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{title}: API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png")
