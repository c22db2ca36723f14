"""A bounded request queue in front of one engine: a worker thread takes what is waiting, batches
requests with the same sampling settings into one ``engine.generate`` call, and streams the rest."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from steer.engines.base import Prompt, Response, Sampling


class QueueFull(Exception):
    """The queue is at its bound; the caller should answer 503 with Retry-After."""


@dataclass
class Ticket:
    """One queued request: a rendered prompt, its sampling, and where its result (or stream pieces) go."""

    prompt: Prompt
    sampling: Sampling
    future: Future = field(default_factory=Future)
    on_piece: Callable[[str | Response | BaseException], None] | None = None  # set for streaming
    cancel: threading.Event = field(default_factory=threading.Event)


class Batcher:
    """Runs jobs on ``engine`` from a queue of at most ``max_queue`` waiting jobs."""

    def __init__(self, engine: Any, max_queue: int = 64, max_batch: int = 16) -> None:
        self.engine, self.max_batch = engine, max_batch
        self._queue: queue.Queue[Ticket | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="steer-batcher", daemon=True)
        self.served = 0
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Ticket) -> Ticket:
        """Queue a job or raise :class:`QueueFull`."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _take(self, first: Ticket) -> tuple[list[Ticket], Ticket | None]:
        """``first`` and the waiting non-streaming jobs with the same sampling (up to ``max_batch``);
        a job that does not fit is handed back to run next."""
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return batch, None
            if job is None or job.on_piece is not None or job.sampling != first.sampling:
                return batch, job
            batch.append(job)
        return batch, None

    def _run(self) -> None:
        pending: Ticket | None = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is None:
                return
            if job.on_piece is not None:
                self._stream(job)
                continue
            batch, pending = self._take(job)
            try:
                results = self.engine.generate([j.prompt for j in batch], job.sampling)
            except BaseException as err:  # noqa: BLE001 - every waiting request gets the error
                for j in batch:
                    j.future.set_exception(err)
                continue
            for j, result in zip(batch, results):
                j.future.set_result(result)
            self.served += len(batch)

    def _stream(self, job: Ticket) -> None:
        assert job.on_piece is not None
        try:
            for piece in self.engine.stream(job.prompt, job.sampling, cancel=job.cancel):
                job.on_piece(piece)
        except BaseException as err:  # noqa: BLE001 - reported to the client, the server goes on
            job.on_piece(err)
        self.served += 1

