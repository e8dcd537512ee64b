"""ASGI middleware of ``sfumato serve``: :class:`BodyLimit` refuses oversized request bodies before they are
spooled to disk; :class:`Guard` refuses requests a browser could be tricked into sending (DNS rebinding,
cross-origin writes) and adds the security headers."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sfumato.server.settings import is_loopback


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over ``limit(scope)`` bytes with 413, by ``Content-Length`` and while
    streaming (chunked uploads), before they are spooled to disk."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        msg = (f"request body over this server's limit of {limit // (1024 * 1024)} MiB; send fewer or smaller "
               "images per job")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await JSONResponse({"detail": msg}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


_SECURITY_HEADERS = (("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
                     ("x-frame-options", "DENY"))


class Guard:
    """Refuses requests a browser could be tricked into sending: with a loopback binding, a ``Host``
    that is not a loopback name (DNS rebinding, 421); state-changing requests from another web origin
    (403). Adds ``nosniff``/``no-referrer``/``DENY`` headers to every response."""

    def __init__(self, app: ASGIApp, bound_host: str) -> None:
        self.app = app
        self.loopback = is_loopback(bound_host)
        self.allowed_hosts = {"localhost", "127.0.0.1", "::1", bound_host.lower().strip("[]")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        host = (urlsplit("//" + host_header).hostname or "").lower()
        if self.loopback and host not in self.allowed_hosts:
            await JSONResponse({"detail": f"unexpected Host {host!r} for a server bound to a loopback address "
                                          "(DNS-rebinding protection); open it as http://127.0.0.1:<port>/"},
                               status_code=421)(scope, receive, send)
            return
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin is not None \
                and urlsplit(origin).netloc.lower() != host_header.lower():
            await JSONResponse({"detail": f"cross-origin request from {origin} refused; use this server's own "
                                          "page or a non-browser client"}, status_code=403)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                for k, v in _SECURITY_HEADERS:
                    if k not in h:
                        h[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)
