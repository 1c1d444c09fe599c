"""A POST written by hand on a socket: its body in pieces with pauses (slow writes), chunked or
with a Content-Length, and optionally never finished, so a test controls exactly when each byte
reaches Envoy. The answer is read as soon as it comes, even while the body is still being sent
(a filter may answer before the body ends)."""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass

from .net import LOOPBACK


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float  # from the first byte sent to the answer's head

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def post_in_pieces(port: int, path: str, headers: dict[str, str], pieces: list[bytes], *, pause: float = 0.0,
                   chunked: bool = False, finish: bool = True, declared_length: int | None = None,
                   timeout: float = 15) -> Answer:
    """POST `pieces` one by one, `pause` seconds apart, on a new connection.

    chunked: frame each piece as an HTTP/1.1 chunk (else send a Content-Length: the total, or
    `declared_length`); finish=False: never send the last chunk / the rest of the declared
    length, and wait for Envoy to answer anyway."""
    total = sum(len(p) for p in pieces)
    head = [f"POST {path} HTTP/1.1", f"host: {LOOPBACK}:{port}", "connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("transfer-encoding: chunked" if chunked else f"content-length: {declared_length or total}")
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        started = time.monotonic()
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for piece in pieces:
                if pause:
                    time.sleep(pause)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked and finish:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # Envoy answered and closed before the whole body was written
        response = http.client.HTTPResponse(sock)
        response.begin()
        seconds = time.monotonic() - started
        body = response.read()
        return Answer(response.status, list(response.getheaders()), body, seconds)
