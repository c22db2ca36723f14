"""Running the app under uvicorn so that no client can stall the others: a connection that has not
sent its request headers within the timeout (of opening, or of its last response) is closed (idle and slow clients cannot pile up), the
number of connections does not turn into 503s, and SIGTERM answers every waiting request with a 503
at once while the ones already running finish."""

from __future__ import annotations

import asyncio
from typing import Any


def guarded_protocol(timeout_s: float) -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection that sends no complete request headers
    within ``timeout_s`` seconds of opening, or of its previous response (keep-alive)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            # a request whose headers are complete gets a new cycle; the same cycle at the deadline
            # means no request has begun since the deadline was set
            self._armed_cycle = self.cycle
            self._deadline = self.loop.call_later(timeout_s, self._close_if_idle)

        def _close_if_idle(self) -> None:
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._deadline.cancel()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline.cancel()
            super().connection_lost(exc)

    return Guarded


def run(app: Any, server: Any, *, host: str, port: int, grace_s: int, timeout_s: float, log_level: str) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; on the signal ``server.drain()`` runs on the event loop
    first (waiting requests get 503), then uvicorn finishes in-flight requests (up to ``grace_s``)."""
    import signal

    import uvicorn

    class Steer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            loop = getattr(server, "loop", None)
            if loop is not None:  # not in the signal handler itself: it may interrupt a queue operation
                loop.call_soon_threadsafe(server.drain)
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal after its graceful shutdown; a no-op SIGTERM handler underneath
    # makes a requested stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace_s,
                            http=guarded_protocol(timeout_s), timeout_keep_alive=max(1, int(timeout_s)), access_log=False)
    Steer(config).run()
