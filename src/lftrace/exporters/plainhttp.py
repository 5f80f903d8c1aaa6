"""HTTP/1.1 to an endpoint on this machine over the standard library's ``http.client``: the exporters' fast path.

A local collector, Phoenix or ``lftrace serve`` is reached over plain http on loopback, where a request costs its
client's CPU and nothing else: httpx spent ~1.1-1.6 ms of CPU per request there (URL parsing, cookies, h11's
events, the pool's checks) against ~0.4 ms for ``http.client`` on the same machine, and a long run's export is
hundreds of requests made while the program runs on the other core. Anything else (https, another host, a proxy
in the environment) keeps httpx, which does TLS, proxies and redirects properly.

``PlainHttp.request`` answers with a ``PlainResponse`` (``status_code``, ``text``, ``headers.get``: what the
exporters read of an httpx response) or raises ``PlainConnectError`` / ``PlainTimeout``.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from ..config import is_loopback

_PROXY_VARIABLES = ("http_proxy", "all_proxy")


class PlainConnectError(OSError):
    """Nothing answers at the endpoint's address (refused, unknown host)."""


class PlainTimeout(TimeoutError):
    """A connect, send or read took longer than the request's timeout."""


def usable_for(url: str) -> bool:
    """Plain http to this machine, with no proxy in the environment (httpx would honour one)."""
    try:
        if not url.startswith("http://") or not is_loopback(url):
            return False
        urlsplit(url).port  # noqa: B018 - raises for a port that is not a number
    except ValueError:  # not a URL httpx could use either: it says why
        return False
    return not any(os.environ.get(name) or os.environ.get(name.upper()) for name in _PROXY_VARIABLES)


class PlainResponse:
    """A read answer: the parts of httpx's ``Response`` the exporters use."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status_code = status
        self.headers = headers  # case-insensitive ``get``
        self.content = body

    @property
    def text(self) -> str:
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")


class PlainHttp:
    """Keep-alive connections to endpoints on this machine; thread-safe (each request takes an idle connection or
    opens one). ``shutdown`` ends every request in flight at once (a deadline passed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._open: set[http.client.HTTPConnection] = set()
        self._shut = False  # ``shutdown`` ran: requests in flight end, none is tried again

    def request(
        self, method: str, url: str, *, content: bytes, headers: dict[str, str], timeout: float | None
    ) -> PlainResponse:
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (host, port)
        for attempt in range(2):
            conn, reused = self._take(key, timeout)
            try:
                conn.request(method, path, body=content, headers=headers)
                answer = conn.getresponse()
                response = PlainResponse(answer.status, answer.headers, answer.read())
            except TimeoutError as exc:
                self._drop(conn)
                raise PlainTimeout(f"timed out ({exc})") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop(conn)
                if reused and attempt == 0 and not self._shut:  # the server closed a kept connection: once more
                    continue
                raise PlainConnectError(f"connection to {host}:{port} lost: {exc}") from None
            except ConnectionRefusedError as exc:
                self._drop(conn)
                raise PlainConnectError(f"cannot connect to {host}:{port}: {exc}") from None
            except OSError as exc:  # unknown host, a socket shut down by ``shutdown`` (past the deadline)
                connected = conn.sock is not None
                self._drop(conn)
                if not connected and not reused:
                    raise PlainConnectError(f"cannot connect to {host}:{port}: {exc}") from None
                raise
            except BaseException:
                self._drop(conn)
                raise
            if answer.will_close:
                self._drop(conn)
            else:
                with self._lock:
                    self._idle.setdefault(key, []).append(conn)
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _take(self, key: tuple[str, int], timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            conn = idle.pop() if idle else None
            if conn is None:
                conn = http.client.HTTPConnection(key[0], key[1], timeout=timeout)
                self._open.add(conn)
                return conn, False
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn, True

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(conn)
            for idle in self._idle.values():
                if conn in idle:
                    idle.remove(conn)
        conn.close()

    def shutdown(self) -> None:
        """Shut down every connection's socket: a read blocked on one ends at once (closing alone may not wake it)."""
        with self._lock:
            self._shut = True
            conns = list(self._open)
        for conn in conns:
            sock: Any = conn.sock
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue

    def close(self) -> None:
        with self._lock:
            conns, self._open, self._idle = list(self._open), set(), {}
        for conn in conns:
            conn.close()
