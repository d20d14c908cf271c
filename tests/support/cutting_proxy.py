"""A TCP proxy that loses answers: the server got the request and answered, the
client never hears of it (a dropped connection, a load balancer timing out).

Every socket is on 127.0.0.1 and every read is bounded in time.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import typing as t

#: Seconds any one read or connect of the proxy may take.
IO_TIMEOUT = 60.0


class CuttingProxy:
    """Forwards each connection from a free 127.0.0.1 port to ``upstream_port``,
    both ways, except while :attr:`cuts` is above zero: then the whole answer of
    the server is read and kept in :attr:`cut_answers`, and the client's connection
    closed without a byte of it, after calling :attr:`on_cut` with that answer
    (to stop a dependency before the client can retry, say).

    Use as a context manager; :attr:`port` is where clients connect.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        #: How many of the next answers to cut.
        self.cuts = 0
        #: The answers cut, as the server sent them (head and body).
        self.cut_answers: list[bytes] = []
        #: Called with each answer cut, before the client's connection is closed.
        self.on_cut: t.Callable[[bytes], None] = lambda answer: None
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._relay(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=IO_TIMEOUT)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts <= 0:
                return False
            self.cuts -= 1
            return True

    def _relay(self, client: socket.socket) -> None:
        client.settimeout(IO_TIMEOUT)
        with socket.create_connection(("127.0.0.1", self.upstream_port),
                                      timeout=IO_TIMEOUT) as upstream:
            outbound = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            outbound.start()
            if self._take_cut():
                answer = _read_answer(upstream)
                self.cut_answers.append(answer)
                try:
                    self.on_cut(answer)
                finally:
                    # A shutdown, not a close, wakes the pump blocked reading it
                    # (unless the client, tired of waiting, left already).
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RDWR)
            else:
                _pump(upstream, client)
            outbound.join(timeout=IO_TIMEOUT)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either end closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass  # the other end closed, or the proxy cut it: stop copying
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _read_answer(upstream: socket.socket) -> bytes:
    """One whole HTTP answer from ``upstream``: its head, and a body of the
    ``Content-Length`` it names (or up to the end of the connection)."""
    data = b""
    length: int | None = None
    while True:
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator and length is None:
            length = _content_length(head)
        if length is not None and len(body) >= length:
            return data
        chunk = upstream.recv(65536)
        if not chunk:
            return data
        data += chunk


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def answer_body(answer: bytes) -> bytes:
    """The body of a cut answer (after its head)."""
    return answer.partition(b"\r\n\r\n")[2]
