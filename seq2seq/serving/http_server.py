"""The sockets and the HTTP/1.1 protocol that uvicorn serves the app on.

`bind(host, port)` takes the address before anything else starts, so that a busy port or an
address this machine does not have is one line (`ConfigError`) instead of uvicorn's log of a
started and stopped app. `http_server(app)` is uvicorn as the serve command runs it, on those
sockets, with `RefusingH11Protocol`: requests that are not valid HTTP/1.1 get an answer the
client can read, 431 for headers over `MAX_HEADER_BYTES`.
"""

from __future__ import annotations

import json
import socket
import sys

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from seq2seq.errors import ConfigError

# What h11 buffers of a request line and headers still incomplete (its default, as IIS's): past
# it the request is refused with 431. Headers that arrive whole in one read of the socket are
# parsed whatever their size: the limit bounds the memory that a slow sender can hold.
MAX_HEADER_BYTES = 16 * 1024
LINGER_S = 5.0  # how long a refused client may go on sending before the connection is closed
SHUTDOWN_TIMEOUT_S = 60  # for the requests in flight when SIGTERM comes


def bind(host: str, port: int) -> list[socket.socket]:
    """A socket bound to each address `host` resolves to, as asyncio's create_server binds them
    (SO_REUSEADDR; IPv6 sockets IPv6 only); ConfigError naming the address and the reason if one
    cannot be bound."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as error:  # socket.gaierror for a name that does not resolve
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sockets


def http_server(app: ASGIApp) -> uvicorn.Server:
    """uvicorn serving `app` over HTTP/1.1 with RefusingH11Protocol (whatever other HTTP
    implementation is installed); `.run(sockets=bind(...))` serves until SIGTERM or Ctrl-C."""
    return uvicorn.Server(uvicorn.Config(
        app, http=RefusingH11Protocol, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level="info", timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S))


class RefusingH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering a request that is not valid HTTP/1.1 so that the
    client reads the answer.

    uvicorn answers every such request 400 in plain text and closes the connection at once. This
    one answers with the status h11 suggests (431 for a request line and headers over
    MAX_HEADER_BYTES) in the API's JSON shape, then closes in stages: a client that is still
    sending the rest of its headers would otherwise get a connection reset, which can erase the
    answer before the client reads it (RFC 9112, section 9.6). So the server shuts down its
    sending side, drops what still arrives, and closes when the client does or after LINGER_S.
    """

    refused = False

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this in its `except h11.RemoteProtocolError`: the error being handled
        error = sys.exc_info()[1]
        assert isinstance(error, h11.RemoteProtocolError), error
        status = error.error_status_hint
        message = (f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes"
                   if status == 431 else f"not a valid HTTP/1.1 request: {error}")
        body = json.dumps({"error": message, "field": None}, separators=(",", ":")).encode()
        headers = [("content-type", "application/json"), ("content-length", str(len(body))),
                   ("connection", "close")]
        for event in (h11.Response(status_code=status, headers=headers), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.refused = True
        self.transport.write_eof()  # sent once the answer is: the client reads it, then EOF
        self.loop.call_later(LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self.refused:  # the rest of a refused request is dropped
            super().data_received(data)
