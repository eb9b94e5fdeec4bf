"""The sockets that uvicorn serves the app on.

`bind(host, port)` takes the address before anything else starts, so that a busy port or an
address this machine does not have is one line (`ConfigError`) instead of uvicorn's log of a
started and stopped app. `http_server(app)` is uvicorn as the serve command runs it, on those
sockets.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.types import ASGIApp

from seq2seq.errors import ConfigError

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
    """uvicorn serving `app`; `.run(sockets=bind(...))` serves until SIGTERM or Ctrl-C."""
    return uvicorn.Server(uvicorn.Config(app, log_level="info",
                                         timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S))
