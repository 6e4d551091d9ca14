"""What `lsllm serve` is set up with: its limits and its listening socket. No FastAPI here, so the CLI can
build its flags without loading the web stack."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from lsllm.config import PREDICT_BATCH_SIZE, option
from lsllm.errors import LsllmError


@dataclass(frozen=True)
class ServeOptions:
    """Batching and request limits of the service; the `lsllm serve` flags take their defaults from here."""

    max_batch_size: int = option(32, "most inputs merged into one prediction call; 1 turns merging off")
    max_wait_ms: float = option(10.0, "longest a request waits for other requests to join its batch")
    batch_size: int = option(PREDICT_BATCH_SIZE, "inputs per forward pass within a prediction call")
    max_body_bytes: int = option(1_000_000, "largest request body in bytes; a larger one gets status 413")
    max_inputs: int = option(64, "most inputs in one request; more get status 422")
    max_chars: int = option(10_000, "longest input in characters; a longer one gets status 422")
    request_timeout_s: float = option(
        10.0,
        "longest a client may take to send a request's headers, and then its body; a slower one gets"
        " status 408 and is disconnected, so a stalled client cannot hold a connection",
    )
    max_connections: int = option(
        256,
        "most connections served at once, idle keep-alive ones included; a request on one more gets"
        " status 503 instead of joining an ever longer queue",
    )

    def check(self) -> ServeOptions:
        for name in ("max_batch_size", "batch_size", "max_body_bytes", "max_inputs", "max_chars"):
            if getattr(self, name) < 1:
                raise LsllmError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_connections < 1:
            raise LsllmError(f"--max-connections must be at least 1, not {self.max_connections}")
        if self.max_wait_ms < 0:
            raise LsllmError(f"--max-wait-ms must be 0 or more, not {self.max_wait_ms}")
        if not self.request_timeout_s > 0:
            raise LsllmError(f"--request-timeout-s must be more than 0, not {self.request_timeout_s}")
        return self


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free port), so a busy port fails before the model loads."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        if sock is not None:
            sock.close()
        reason = error.strerror or str(error)
        raise LsllmError(
            f"cannot listen on {host}:{port} ({reason}); choose another --port or --host"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def timeout_detail(part: str, seconds: float) -> str:
    return (
        f"the request {part} did not arrive within this server's limit of {seconds:g} s"
        " (--request-timeout-s); send the whole request without pausing"
    )
