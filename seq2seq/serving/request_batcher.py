"""Concurrent translation requests gathered into batched searches: the server's batching.

A request waits at most `window_ms` for others to join its batch, up to `max_batch_tokens`
source subwords a batch, so 32 clients sending one sentence each share a few batched beam
searches instead of queueing for 32 separate ones; what arrives while a batch decodes forms the
next one. What waits is bounded (`max_queued_lines`): past it a request is refused at once
(`Unavailable`, which the server answers with 503 and Retry-After), never queued without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

from seq2seq.inference.decoding import SearchSettings
from seq2seq.inference.translator import Translation, Translator
from seq2seq.serving.settings import Batching

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # what a client told "busy" should wait before trying again


class Unavailable(Exception):
    """The batcher takes no request now: its queue is full (retry after `retry_after` seconds)
    or it is closing (`retry_after` None)."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Job:
    """One request's lines, waiting for (or in) a batch."""

    translator: Translator
    lines: list[str]
    src_ids: list[list[int]]  # the lines encoded once, for the token budget and the search
    settings: SearchSettings
    arrived: float
    future: asyncio.Future[list[Translation]] = field(repr=False)

    @property
    def tokens(self) -> int:
        """Source subwords with EOS: what the job costs against the batch's token budget."""
        return sum(len(ids) + 1 for ids in self.src_ids)

    @property
    def key(self) -> tuple[int, int, int, bool]:
        """Jobs with the same key are decoded in one search call."""
        return (id(self.translator), self.settings.beam_size, self.settings.nbest,
                self.settings.attention)


class Batcher:
    """Gathers the lines of concurrent requests into batched searches on one decoding thread.

    The event loop never decodes: searches run one at a time on a worker thread (torch releases
    the GIL), so the server keeps accepting and answering requests meanwhile, and what arrives
    during a search forms the next batch.
    """

    def __init__(self, batching: Batching) -> None:
        self.batching = batching
        self._pending: deque[Job] = deque()
        self._pending_tokens = 0
        self.queued_lines = 0
        self._changed = asyncio.Event()  # a job arrived, or the batcher is closing
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._worker: asyncio.Task[None] | None = None
        self._free_since = 0.0  # when the last search ended (event loop time)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Refuse new work, finish what is queued, stop the thread."""
        self._closing = True
        self._changed.set()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown()

    async def translate(self, translator: Translator, lines: list[str],
                        settings: SearchSettings) -> list[Translation]:
        """The lines' translations, in order, once the batch holding them is decoded.

        Raises Unavailable when the queue is full or the batcher is closing, and what the
        search raised if it failed.
        """
        if self._closing:
            raise Unavailable("the server is shutting down")
        if not lines:  # zero lines in, zero out: nothing to wait for
            return []
        if self.queued_lines + len(lines) > self.batching.max_queued_lines:
            raise Unavailable(f"busy: {self.queued_lines} lines are waiting; retry in "
                              f"{RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S)
        loop = asyncio.get_running_loop()
        job = Job(translator, lines, translator.tokenizer.encode_src(lines), settings,
                  loop.time(), loop.create_future())
        self._pending.append(job)
        self._pending_tokens += job.tokens
        self.queued_lines += len(lines)
        self._changed.set()
        return await job.future

    async def _run(self) -> None:
        while self._pending or not self._closing:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            await self._gather()
            batch = self._take_batch()
            if batch:
                await self._decode(batch)
                self._free_since = asyncio.get_running_loop().time()

    async def _gather(self) -> None:
        """Wait until the batch is full, the batcher closes, or `window_ms` has passed since the
        oldest job arrived or, if later, since the last search ended.

        The second clock is for steady load: the clients of the batch just decoded send their
        next requests over a few milliseconds; without it the first of them would leave at once
        with the stragglers of the batch before, and the load would settle into one full batch
        and one small one in turn (measured: 32 clients made batches of 27 and 5 sentences).
        """
        loop = asyncio.get_running_loop()
        start = max(self._pending[0].arrived, self._free_since)
        deadline = start + self.batching.window_ms / 1000
        while (not self._closing and self._pending_tokens < self.batching.max_batch_tokens
               and loop.time() < deadline):
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())

    def _take_batch(self) -> list[Job]:
        """The oldest jobs up to the token budget (at least one); jobs whose client left are
        dropped."""
        batch: list[Job] = []
        tokens = 0
        while self._pending:
            job = self._pending[0]
            if batch and tokens + job.tokens > self.batching.max_batch_tokens:
                break
            self._pending.popleft()
            self._pending_tokens -= job.tokens
            self.queued_lines -= len(job.lines)
            if not job.future.done():  # cancelled when the client disconnected
                batch.append(job)
                tokens += job.tokens
        return batch

    async def _decode(self, batch: list[Job]) -> None:
        """One search per (model, beam, nbest, attention) among the batch's jobs, results to
        each job."""
        loop = asyncio.get_running_loop()
        groups: dict[tuple[int, int, int, bool], list[Job]] = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            lines = [line for job in jobs for line in job.lines]
            src_ids = [ids for job in jobs for ids in job.src_ids]
            try:
                found = await loop.run_in_executor(
                    self._executor, jobs[0].translator.search_encoded, lines, src_ids,
                    jobs[0].settings, len(lines))
            except Exception as error:  # a failed search fails its requests, not the server
                log.exception("decoding a batch of %d lines failed", len(lines))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(found[start:start + len(job.lines)])
                start += len(job.lines)
