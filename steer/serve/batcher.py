"""A bounded request queue in front of one engine: a worker thread takes what is waiting, in order,
and batches the waiting requests with the same sampling settings into one ``engine.generate`` call,
streamed ones into one ``engine.stream_rows`` (or ``engine.stream``, one alone). A ticket is one row:
a request's ``n`` choices are ``n`` tickets queued together (:meth:`Batcher.submit_all`), so they run
as rows of one batch, count against the queue bound as ``n`` requests would, and a request asking
for many rows waits its turn and takes at most ``max_batch`` rows of a call, as that many clients would.

A request whose client has gone (its ``cancel`` is set) is dropped before it runs (answered with
:class:`ClientGone`, so nothing waits on it); on shutdown
(:meth:`Batcher.drain`) every request still waiting is answered with :class:`ServerClosing` (a 503)
at once, and only what is already running finishes.
"""

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


class ServerClosing(Exception):
    """The server is shutting down: the request was not started (a 503)."""


class ClientGone(Exception):
    """The request's client left before it ran, so it never will (its ``cancel`` was set)."""


@dataclass
class Ticket:
    """One queued row (a request, or one of its ``n`` choices): a rendered prompt, its sampling, and where
    its result (or stream pieces) go."""

    prompt: Prompt
    sampling: Sampling
    future: Future = field(default_factory=Future)
    on_piece: Callable[[str | Response | BaseException], None] | None = None  # set for streaming
    cancel: threading.Event = field(default_factory=threading.Event)

    def refuse(self, err: BaseException) -> None:
        """Answer this request with ``err`` without running it."""
        if self.on_piece is not None:
            self.on_piece(err)
        elif not self.future.done():
            self.future.set_exception(err)


class Batcher:
    """Runs jobs on ``engine`` from a queue of at most ``max_queue`` waiting jobs."""

    def __init__(self, engine: Any, max_queue: int = 64, max_batch: int = 16) -> None:
        self.engine, self.max_batch = engine, max_batch
        self._queue: queue.Queue[Ticket | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()  # a request's tickets go in together or not at all
        self._thread = threading.Thread(target=self._run, name="steer-batcher", daemon=True)
        self.served = 0
        self.running = 0  # requests being generated right now
        self.closing = False
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Ticket) -> Ticket:
        """Queue a job or raise :class:`QueueFull` (:class:`ServerClosing` once draining)."""
        return self.submit_all([job])[0]

    def submit_all(self, jobs: list[Ticket]) -> list[Ticket]:
        """Queue every job, one after another, or none: :class:`QueueFull` when they do not all fit
        (:class:`ServerClosing` once draining)."""
        if self.closing:
            raise ServerClosing
        with self._lock:
            if self._queue.maxsize and self._queue.qsize() + len(jobs) > self._queue.maxsize:
                raise QueueFull
            for k, job in enumerate(jobs):
                try:
                    self._queue.put_nowait(job)
                except queue.Full:  # close() took the last place meanwhile
                    for put in jobs[:k]:
                        put.cancel.set()  # dropped by the worker, never run
                    raise QueueFull from None
        return jobs

    def drain(self) -> int:
        """Stop taking jobs and refuse every one still waiting (how many)."""
        self.closing = True
        refused = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return refused
            if job is not None:
                job.refuse(ServerClosing())
                refused += 1

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        self.closing = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            self.drain()
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    def _take(self, first: Ticket) -> tuple[list[Ticket], Ticket | None]:
        """``first`` and the jobs waiting right behind it that are alike (streamed or not, the same
        sampling; up to ``max_batch``); a job that does not fit is handed back to run next; jobs whose
        client has gone are dropped."""
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return batch, None
            if job is not None and job.cancel.is_set():
                job.refuse(ClientGone())
                continue
            if job is None or (job.on_piece is None) != (first.on_piece is None) or job.sampling != first.sampling:
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
            if job.cancel.is_set():  # its client went away while it waited
                job.refuse(ClientGone())
                continue
            batch, pending = self._take(job)
            self.running = len(batch)
            try:
                if job.on_piece is not None:
                    self._stream(batch)
                else:
                    self._generate(batch)
            finally:
                self.running = 0
            self.served += len(batch)

    def _generate(self, batch: list[Ticket]) -> None:
        try:
            results = self.engine.generate([j.prompt for j in batch], batch[0].sampling)
        except BaseException as err:  # noqa: BLE001 - every waiting request gets the error
            for j in batch:
                j.refuse(err)
            return
        for j, result in zip(batch, results):
            if not j.future.done():
                j.future.set_result(result)

    def _stream(self, batch: list[Ticket]) -> None:
        """Streamed jobs: several as rows of one ``engine.stream_rows``, one (or an engine without it)
        through ``engine.stream``; each job's pieces go to its ``on_piece``, an error to every unfinished one."""
        rows = getattr(self.engine, "stream_rows", None)
        if len(batch) == 1 or rows is None:
            for job in batch:
                if job.cancel.is_set():  # its client left while the ones before it streamed
                    job.refuse(ClientGone())
                else:
                    self._stream_one(job)
            return
        ended = [False] * len(batch)
        try:
            for i, piece in rows([j.prompt for j in batch], batch[0].sampling, cancel=[j.cancel for j in batch]):
                ended[i] = ended[i] or isinstance(piece, Response)
                batch[i].on_piece(piece)
        except BaseException as err:  # noqa: BLE001 - reported to the clients, the server goes on
            for job, done in zip(batch, ended):
                if not done:
                    job.on_piece(err)

    def _stream_one(self, job: Ticket) -> None:
        assert job.on_piece is not None
        try:
            for piece in self.engine.stream(job.prompt, job.sampling, cancel=job.cancel):
                job.on_piece(piece)
        except BaseException as err:  # noqa: BLE001 - reported to the client, the server goes on
            job.on_piece(err)
