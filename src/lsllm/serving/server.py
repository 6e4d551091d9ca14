"""`lsllm serve`: the app of serving/app.py behind uvicorn, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from lsllm import _compat
from lsllm.serving.app import create_app
from lsllm.serving.options import ServeOptions, timeout_detail, url_of

if TYPE_CHECKING:
    from lsllm.inference import Classifier


def make_server(app: FastAPI) -> uvicorn.Server:
    """uvicorn, quiet (the CLI prints its own start line), waiting for in-flight requests on shutdown, with
    the app's limits on connections: `max_connections` (uvicorn answers a request beyond it with a plain
    503), a deadline for each request's head (here) and body (BodyLimit), 5 s for an idle keep-alive
    connection, and h11's 400 for a request head still incomplete after 16 KiB."""
    options: ServeOptions = getattr(app.state, "options", None) or ServeOptions()
    protocol = _compat.h11_protocol_with_head_timeout(
        options.request_timeout_s, timeout_detail("headers", options.request_timeout_s)
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=protocol,
        timeout_keep_alive=5,
        # uvicorn counts the connection of the request it is checking: one more serves max_connections
        limit_concurrency=options.max_connections + 1,
    )
    return uvicorn.Server(config)


def _ignore_signal(signum, frame) -> None:
    pass


def serve(
    classifier: Classifier, sock: socket.socket, options: ServeOptions, tell: Callable[[str], None]
) -> bool:
    """Answer requests on `sock` until SIGINT or SIGTERM, then finish the requests in flight. `tell` hears
    the URL once the server listens. Whether every request in flight was answered (False: forced exit)."""
    server = make_server(create_app(classifier, options))
    sock.listen(2048)
    tell(url_of(sock))
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with a no-op handler
    # underneath, that ends the process with status 0 instead of a KeyboardInterrupt or death by SIGTERM.
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in stops}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return not server.force_exit
