"""Serving translations over HTTP: the FastAPI app, the batching of concurrent requests, the
server's limits and the web page (``web/``).

Imports the shared ground, ``inference`` and ``analysis``; never ``training`` or ``cli``.
"""
