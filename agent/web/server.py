"""A small, bounded, read-only HTTP/1.1 server on asyncio streams.

It runs on the agent's event loop, beside the pollers, so every limit here protects the
polling: the request head must arrive within ``header_timeout_s`` (slowloris), may not
exceed ``max_request_bytes`` (huge headers), at most ``max_clients`` connections are
served at once (the rest get a short 503), only GET and HEAD exist, and every response
closes its connection. Paths are routed to handlers, never to the filesystem, so there is
nothing to traverse to. Basic auth compares in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import os
import ssl
import time
from typing import Callable
from urllib.parse import unquote

from agent.config import WebSettings

log = logging.getLogger("loadwatch.web")

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable", 505: "HTTP Version Not Supported"}
WRITE_TIMEOUT_S = 10.0  # a client that does not read its response is dropped
SECURITY_HEADERS = (
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self'\r\n")


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int, body: str | bytes, content_type: str = "text/plain; "
                 "charset=utf-8", headers: str = ""):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers


# A handler gets the decoded path (no query) and returns a Response (None: 404).
Handler = Callable[[str], "Response | None"]


def make_ssl_context(s: WebSettings) -> ssl.SSLContext:
    """Server TLS from the same kind of files as the broker's: ``cert_file`` and
    ``key_file`` (the server's), ``ca_file`` to require client certificates."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(s.cert_file, s.key_file)
    if s.ca_file:
        ctx.load_verify_locations(s.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class WebServer:
    """Serves ``handler`` on ``settings.host:port`` until ``close()``."""

    def __init__(self, settings: WebSettings, handler: Handler):
        self.settings = settings
        self.handler = handler
        self.active = 0
        self.served = 0
        self.refused = 0  # requests answered with 4xx/5xx, or dropped
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()
        self._expected = b""
        if settings.auth:
            token = base64.b64encode(("%s:%s" % (settings.username, settings.password))
                                     .encode("utf-8"))
            self._expected = b"Basic " + token

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self.settings.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self.settings
        ctx = make_ssl_context(s) if s.tls else None
        try:
            self._server = await asyncio.start_server(
                self._client, s.host, s.port, ssl=ctx, limit=s.max_request_bytes,
                ssl_handshake_timeout=s.header_timeout_s if ctx else None,
                reuse_address=True)
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise OSError("web: cannot listen on %s:%d: %s" % (s.host, s.port, why)) from None
        log.info("status page on http%s://%s:%d/", "s" if ctx else "", s.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ one client

    async def _client(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        self.active += 1
        try:
            if self.active > self.settings.max_clients:
                self.refused += 1
                await self._send(writer, Response(503, "busy: too many clients\n",
                                                  headers="Retry-After: 5\r\n"), False)
                return
            resp, head_only = await self._request(reader)
            if resp.status >= 400:
                self.refused += 1
            else:
                self.served += 1
            await self._send(writer, resp, head_only)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                ssl.SSLError, OSError):
            self.refused += 1
        finally:
            self.active -= 1
            if task is not None:
                self._conns.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
                pass

    async def _request(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        s = self.settings
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), s.header_timeout_s)
        except asyncio.TimeoutError:
            return Response(408, "request head not received in time\n"), False
        except (asyncio.LimitOverrunError, ValueError):
            return Response(431, "request head too large\n"), False
        except asyncio.IncompleteReadError as e:
            if len(e.partial) >= s.max_request_bytes:
                return Response(431, "request head too large\n"), False
            raise
        try:
            text = head.decode("latin-1")
            request_line, *header_lines = text[:-4].split("\r\n")
            method, target, version = request_line.split(" ")
        except ValueError:
            return Response(400, "malformed request line\n"), False
        if not version.startswith("HTTP/1."):
            return Response(505, "HTTP/1.x only\n"), False
        if method not in ("GET", "HEAD"):
            return Response(405, "read-only: GET and HEAD only\n",
                            headers="Allow: GET, HEAD\r\n"), False
        head_only = method == "HEAD"
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                return Response(400, "malformed header\n"), head_only
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers or "transfer-encoding" in headers:
            return Response(400, "a GET carries no body\n"), head_only
        if self._expected and not hmac.compare_digest(
                headers.get("authorization", "").encode("latin-1"), self._expected):
            return Response(401, "authentication required\n",
                            headers='WWW-Authenticate: Basic realm="loadwatch", '
                            'charset="UTF-8"\r\n'), head_only
        path = target.split("?", 1)[0]
        if not path.startswith("/"):
            return Response(400, "bad request target\n"), head_only
        try:
            path = unquote(path, errors="strict") if "%" in path else path
        except UnicodeDecodeError:
            return Response(400, "bad request target\n"), head_only
        if "\x00" in path or "/../" in path + "/" or "\\" in path:
            return Response(404, "not found\n"), head_only
        try:
            resp = self.handler(path)
        except Exception:
            log.exception("web page %s failed", path)
            return Response(500, "internal error (see the agent's log)\n"), head_only
        return (resp if resp is not None else Response(404, "not found\n")), head_only

    async def _send(self, writer: asyncio.StreamWriter, resp: Response,
                    head_only: bool) -> None:
        head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\nDate: %s\r\n%s%s\r\n" % (
                    resp.status, REASONS.get(resp.status, ""), resp.content_type,
                    len(resp.body),
                    time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                    SECURITY_HEADERS, resp.headers))
        writer.write(head.encode("latin-1"))
        if not head_only:
            writer.write(resp.body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
