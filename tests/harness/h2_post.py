"""A POST over cleartext HTTP/2 (prior knowledge, as Envoy's AUTO codec accepts it) written frame
by frame with the h2 library: headers, the body in pieces with pauses, then request trailers,
so a test controls when each part reaches Envoy. The answer is read to the end of its stream."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events

from .net import LOOPBACK
from .raw_post import Answer


def post_with_trailers(port: int, path: str, headers: dict[str, str], pieces: list[bytes],
                       trailers: dict[str, str], *, pause: float = 0.0, timeout: float = 15) -> Answer:
    """POST `pieces` as DATA frames (none: no body), then `trailers` ending the stream; each
    frame after the headers `pause` seconds after the one before."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        started = time.monotonic()
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        head = [(":method", "POST"), (":scheme", "http"), (":authority", f"{LOOPBACK}:{port}"), (":path", path)]
        connection.send_headers(stream, head + list(headers.items()))
        sock.sendall(connection.data_to_send())
        for piece in pieces:
            if pause:
                time.sleep(pause)
            connection.send_data(stream, piece)
            sock.sendall(connection.data_to_send())
        if pause:
            time.sleep(pause)
        connection.send_headers(stream, list(trailers.items()), end_stream=True)
        sock.sendall(connection.data_to_send())
        return _read_answer(sock, connection, stream, started)


def _read_answer(sock: socket.socket, connection: h2.connection.H2Connection, stream: int,
                 started: float) -> Answer:
    status, seconds, response_headers, body = 0, 0.0, [], b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("Envoy closed the connection before the answer ended")
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                seconds = time.monotonic() - started
                response_headers = [(str(k), str(v)) for k, v in event.headers or []]
                status = int(dict(response_headers)[":status"])
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data or b""
                connection.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset) and event.stream_id == stream:
                sock.sendall(connection.data_to_send())
                return Answer(status, response_headers, body, seconds)
        sock.sendall(connection.data_to_send())
