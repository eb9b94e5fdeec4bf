"""Serving translations over HTTP: the FastAPI app, the batching of concurrent requests, the
server's limits, the sockets and HTTP/1.1 protocol uvicorn serves on, and the web page
(``web/``).

Imports the shared ground, ``inference`` and ``analysis``; never ``training`` or ``cli``.
"""
