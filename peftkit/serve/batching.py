"""Dynamic batching: concurrent requests gathered for a few milliseconds into one forward pass.

Requests wait in a bounded queue (counted in inputs, not requests); a full queue is refused at once
(the app answers 503 with Retry-After) rather than building an unbounded backlog. One loop takes
the first waiting request, then whatever else arrives within ``max_wait`` seconds, up to
``max_batch`` inputs -- but only while requests come concurrently (some queued behind the first, or
the last batch held more than one request): a lone client is never made to wait for company that is
not coming, so at concurrency 1 a request costs one forward pass and nothing more. The batch is split
by (engine, adapter), each part sorted by token length and cut into chunks of similar length (so short
texts are not padded to a long one's width), and run on an inference thread (torch uses its own threads inside; the event loop stays free).
``parallel`` > 1 runs that many batches at once on as many threads: on a small or shared CPU, two
single-threaded forwards use two cores without OpenMP's spin-waiting between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("peftkit.serve")


class QueueFull(Exception):
    """The queue holds ``max_queue`` inputs already; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    """One request's inputs for one served model; ``future`` gets an (n, labels) array of probabilities."""

    served: Any  # ServedModel
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    tokens: int = 0


class Batcher:
    """The queue and the loop that empties it into batched forward passes."""

    def __init__(
        self, *, max_batch: int, max_wait_ms: float, max_queue: int, metrics: Any = None, parallel: int = 1
    ) -> None:
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.metrics = metrics
        self.parallel = parallel  # batches in flight at once, each on its own inference thread
        self.pending = 0  # inputs queued or running
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="peftkit-infer")
        self._tasks: list[asyncio.Task] = []
        self._seconds_per_input = 0.01  # running estimate, for Retry-After
        self._last_requests = 0  # requests in the last batch: more than one = clients are sending concurrently

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop()) for _ in range(self.parallel)]

    async def stop(self) -> None:
        """Finish what is queued, then stop the loop and the inference thread."""
        while self.pending:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, served: Any, texts: list[str], pairs: list[str] | None) -> tuple[np.ndarray, int]:
        """Queue one request's inputs and wait for their probabilities; also the tokens they made."""
        n = len(texts)
        if self.pending + n > self.max_queue:
            wait = self.pending * self._seconds_per_input
            raise QueueFull(max(1, int(wait + 0.999)))
        job = Job(served, texts, pairs, asyncio.get_running_loop().create_future())
        alone = self.pending == 0 and self._last_requests <= 1  # nothing queued or running, no concurrent clients
        self.pending += n
        self._gauge()
        try:
            if alone:  # straight to an inference thread: no queue hop and no loop task to wake
                (res,) = await self._execute([job])
                if isinstance(res, Exception):
                    raise res
                return res, job.tokens
            self._queue.put_nowait(job)
            return await job.future, job.tokens
        finally:
            self.pending -= n
            self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.pending)

    async def _gather(self) -> list[Job]:
        """The first waiting job, then more until ``max_batch`` inputs or ``max_wait`` has passed."""
        jobs = [await self._queue.get()]
        size = len(jobs[0].texts)
        concurrent = self._last_requests > 1 or not self._queue.empty()
        deadline = time.perf_counter() + (self.max_wait if concurrent else 0.0)
        while size < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                job = self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            size += len(job.texts)
        self._last_requests = len(jobs)
        return jobs

    async def _execute(self, jobs: list[Job]) -> list[Any]:
        """:meth:`_run` on an inference thread: one result (or exception) per job; updates the time per input."""
        t0 = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, jobs)
        except Exception as exc:  # a bug or an OOM in the forward: fail these requests, keep serving
            log.exception("batch of %d requests failed", len(jobs))
            results = [exc] * len(jobs)
        n = sum(len(j.texts) for j in jobs)
        spent = (time.perf_counter() - t0) / max(n, 1)
        self._seconds_per_input = 0.8 * self._seconds_per_input + 0.2 * spent
        return results

    async def _loop(self) -> None:
        while True:
            jobs = await self._gather()
            results = await self._execute(jobs)
            for job, res in zip(jobs, results):
                if job.future.done():  # the client went away
                    continue
                if isinstance(res, Exception):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)

    def _run(self, jobs: list[Job]) -> list[Any]:
        """(inference thread) Encode, group by engine and adapter, sort by length, run in chunks.

        One entry per job: its probabilities, or the exception that failed it. A job whose encoding or
        forward pass fails fails alone: the other requests of the batch still get their answers."""
        rows: dict[tuple[int, str | None], list[tuple[int, int, dict[str, list[int]]]]] = {}
        engines: dict[int, Any] = {}
        failed: dict[int, Exception] = {}
        for j, job in enumerate(jobs):
            sm = job.served
            try:
                enc = sm.engine.encode(job.texts, job.pairs, sm.max_length)
            except Exception as exc:
                log.exception("encoding a request of %d inputs failed; the rest of its batch goes on", len(job.texts))
                failed[j] = exc
                continue
            job.tokens = sum(len(x) for x in enc["input_ids"])
            key = (id(sm.engine), sm.adapter)
            engines[id(sm.engine)] = sm.engine
            for i in range(len(job.texts)):
                rows.setdefault(key, []).append((j, i, {k: v[i] for k, v in enc.items()}))
        out = [np.zeros((len(job.texts), len(job.served.labels)), dtype=np.float32) for job in jobs]
        for (eid, adapter), items in rows.items():
            items.sort(key=lambda t: len(t[2]["input_ids"]))
            for chunk in chunks(items, self.max_batch):
                self._forward(engines[eid], adapter, chunk, out, failed)
        return [failed.get(j, out[j]) for j in range(len(jobs))]

    def _forward(self, engine: Any, adapter: str | None, chunk: list[Any], out: list[Any], failed: dict) -> None:
        """One forward pass over ``chunk`` into ``out``; if it fails and holds rows of several requests, each
        request's rows run again on their own, so only the request that breaks it fails (into ``failed``)."""
        chunk = [row for row in chunk if row[0] not in failed]
        if not chunk:
            return
        try:
            probs = engine.probabilities(adapter, [r for _, _, r in chunk])
        except Exception as exc:
            owners = sorted({j for j, _, _ in chunk})
            if len(owners) == 1:
                log.exception("a forward pass of %d inputs of one request failed", len(chunk))
                failed[owners[0]] = exc
                return
            log.warning("a forward pass of %d requests failed (%s); running them one by one", len(owners), exc)
            for j in owners:
                self._forward(engine, adapter, [row for row in chunk if row[0] == j], out, failed)
            return
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(chunk))
        for (j, i, _), p in zip(chunk, probs):
            out[j][i] = p


# a sorted batch is cut where the next row is this much longer than the chunk's first: padding stays
# under ~25%, while chunks stay large enough to use the matrix units well (MIN_CHUNK rows at least)
CHUNK_GROWTH, MIN_CHUNK = 1.25, 8


def chunks(items: list[Any], max_batch: int) -> list[list[Any]]:
    """Length-sorted rows → forward-pass chunks of at most ``max_batch`` rows with little padding."""
    out: list[list[Any]] = []
    for item in items:
        n = len(item[2]["input_ids"])
        last = out[-1] if out else None
        if (
            last is None
            or len(last) >= max_batch
            or (len(last) >= MIN_CHUNK and n > CHUNK_GROWTH * len(last[0][2]["input_ids"]))
        ):
            out.append([item])
        else:
            last.append(item)
    return out
