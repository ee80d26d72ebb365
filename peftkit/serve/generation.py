"""Running chat completions off the event loop: the prompt is rendered on a worker thread, the answer is
generated on a pool of ``--parallel`` generation threads (one answer at a time per model: each run's ``chat``
object guards its own model), and a bounded count of chat requests in flight (``--max-chat-queue``) answers
more with 503 + Retry-After, as the classify queue does.

Chats are not batched together: each request is one ``generate`` call. Streaming sends each piece of text
as soon as it is safe (see :class:`peftkit.serve.chat.Answer`) from the generation thread to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from peftkit.serve.batching import QueueFull
from peftkit.serve.chat import Answer, ChatRequest, chunk, completion, fit_context, usage

log = logging.getLogger("peftkit.serve")


class ChatRunner:
    """The generation threads, the in-flight count and the token metrics of ``/v1/chat/completions``."""

    def __init__(self, *, threads: int, max_queue: int, max_tokens: int, metrics: Any) -> None:
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="peftkit-chat")
        self.threads, self.max_queue, self.max_tokens, self.metrics = threads, max_queue, max_tokens, metrics
        self.pending = 0  # chat requests generating or waiting for a thread
        self._seconds = 1.0  # running estimate of one answer's time, for Retry-After

    def admit(self) -> None:
        """QueueFull (the app answers 503) when ``max_queue`` chat requests are in flight already."""
        if self.pending >= self.max_queue:
            raise QueueFull(max(1, int(self.pending * self._seconds / self.threads + 0.999)))

    async def prepare(self, served: Any, req: ChatRequest) -> None:
        """Template + token count on a worker thread (a long conversation takes a while to tokenise)."""
        await asyncio.to_thread(fit_context, req, served.chat, self.max_tokens)

    def _generate(self, chat: Any, req: ChatRequest, answer: Answer, push: Callable[[str], None] | None,
                  cancel: threading.Event | None = None) -> list[int]:  # fmt: skip
        """(generation thread) One answer; with ``push``, each safe piece of text as it comes."""

        def on_token(ids: list[int]) -> bool:
            hit = answer.feed(ids)
            if push is not None and (piece := answer.delta()):
                push(piece)
            return hit or (cancel is not None and cancel.is_set())

        t0 = time.perf_counter()
        ids = chat.generate(
            req.prompt, max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
            on_token=on_token if (req.stop or push is not None) else None,
        )  # fmt: skip
        self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - t0)
        return ids

    def _count(self, req: ChatRequest, answer: Answer) -> None:
        u = usage(req, answer)
        self.metrics.tokens.labels(req.model, "prompt").inc(u["prompt_tokens"])
        self.metrics.tokens.labels(req.model, "completion").inc(u["completion_tokens"])

    async def complete(self, served: Any, req: ChatRequest, rid: str) -> dict[str, Any]:
        """The whole ``chat.completion`` object."""
        self.pending += 1
        try:
            answer = Answer(served.chat, req.stop)
            loop = asyncio.get_running_loop()
            ids = await loop.run_in_executor(self.executor, self._generate, served.chat, req, answer, None)
            answer.feed(ids)
            self._count(req, answer)
            return completion(req, answer, rid)
        finally:
            self.pending -= 1

    async def events(self, served: Any, req: ChatRequest, rid: str) -> AsyncIterator[str]:
        """``chat.completion.chunk`` events: the role, the text in pieces, the finish reason, (usage), [DONE].
        A client that goes away ends the generation at its next token."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        answer, created = Answer(served.chat, req.stop), int(time.time())

        def push(piece: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work() -> list[int]:
            try:
                return self._generate(served.chat, req, answer, push, cancel)
            finally:
                push(None)

        self.pending += 1
        try:
            yield chunk(req, rid, created, {"role": "assistant", "content": ""})
            future = loop.run_in_executor(self.executor, work)
            while (piece := await queue.get()) is not None:
                yield chunk(req, rid, created, {"content": piece})
            try:
                ids = await future
            except Exception:  # the stream has started: the error goes in it, as OpenAI and vLLM do
                log.exception("generation for request %s failed", rid)
                err = {"type": "server_error", "message": f"generation failed (request id {rid}); see the server log"}
                yield f"data: {json.dumps({'error': err})}\n\n"
                yield "data: [DONE]\n\n"
                return
            answer.feed(ids)
            if rest := answer.delta(final=True):
                yield chunk(req, rid, created, {"content": rest})
            yield chunk(req, rid, created, {}, answer.finish_reason(req.max_tokens or 0))
            if req.include_usage:
                yield chunk(req, rid, created, None, use=usage(req, answer))
            self._count(req, answer)
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()
            self.pending -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
