"""An HTTP proxy in front of the test S3 server that fails chosen requests for real.

boto3 talks to it over a socket like to any S3 endpoint, so what it injects reaches the client
exactly as a flaky store's faults do: a 500 InternalError, a 503 SlowDown, a connection
dropped before the request reaches the store, or one dropped after the store applied it (the
response is lost). Everything else is forwarded unchanged (SigV4 signs the Host header, which
is passed through as the client sent it).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

FAULTS = ("500", "503", "reset", "reset-after")
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


def is_put_object(method: str, path: str, query: str) -> bool:
    return method == "PUT" and "uploadId=" not in query and "partNumber=" not in query and path.count("/") >= 2


def is_complete_multipart(method: str, path: str, query: str) -> bool:
    return method == "POST" and "uploadId=" in query


@dataclass
class _Rule:
    match: Callable[[str, str, str], bool]
    faults: list[str]


@dataclass
class FaultProxy:
    upstream: str
    rules: list[_Rule] = field(default_factory=list)
    log: list[tuple[str, str, str, str]] = field(default_factory=list)  # (method, path, query, fault or "ok")
    down: bool = False  # every request gets a 503 SlowDown, as a store that is down for longer than the retries
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        u = urlsplit(self.upstream)
        self._host, self._port = u.hostname, u.port
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, match: Callable[[str, str, str], bool], *faults: str) -> None:
        """The next len(faults) requests that `match(method, path, query)` get these faults, in order."""
        assert all(f in FAULTS for f in faults), faults
        with self._lock:
            self.rules.append(_Rule(match, list(faults)))

    def down_after(self, match: Callable[[str, str, str], bool], n: int) -> None:
        """Let `n` matching requests through, then go down (see `down`) for everything."""
        with self._lock:
            self._down_after = (match, n)

    def injected(self) -> list[str]:
        return [f for *_, f in self.log if f != "ok"]

    def _take(self, method: str, path: str, query: str) -> str:
        with self._lock:
            trigger = getattr(self, "_down_after", None)
            if trigger is not None and trigger[0](method, path, query):
                if trigger[1] <= 0:
                    self.down, self._down_after = True, None  # once: clearing `down` brings the store back
                else:
                    self._down_after = (trigger[0], trigger[1] - 1)
            if self.down:
                fault = "503"
            else:
                fault = "ok"
                for rule in self.rules:
                    if rule.faults and rule.match(method, path, query):
                        fault = rule.faults.pop(0)
                        break
            self.log.append((method, path, query, fault))
            return fault

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _drop(self) -> None:
        """Close with RST, as a reset connection looks to the client."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _handle(self) -> None:
        body = self._body()
        u = urlsplit(self.path)
        fault = self.owner._take(self.command, u.path, u.query)
        if fault == "reset":
            return self._drop()
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<RequestId>faultproxy</RequestId></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            self.wfile.write(xml)
            return
        conn = http.client.HTTPConnection(self.owner._host, self.owner._port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if self.command not in ("GET", "HEAD", "DELETE") or body:
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if fault == "reset-after":  # the store applied it; the client never hears back
            return self._drop()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and not (k.lower() == "content-length" and self.command != "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _safe(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on this request
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _safe
