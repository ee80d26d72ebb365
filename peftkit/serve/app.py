"""The ASGI app (FastAPI): routes, the JSON access log, errors as JSON, model loading in the background.

``/health`` answers as soon as the process runs; ``/ready`` only once every model is loaded (the models
load in a thread after startup, so an orchestrator can tell "starting" from "dead").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from peftkit.serve.auth import AuthError, KeyStore
from peftkit.serve.batching import Batcher, QueueFull
from peftkit.serve.chat import parse_chat
from peftkit.serve.generation import ChatRunner
from peftkit.serve.inputs import InputError, Limits, decode_body, parse_classify
from peftkit.serve.masking import mask
from peftkit.serve.metrics import Metrics

log = logging.getLogger("peftkit.serve")
access = logging.getLogger("peftkit.serve.access")


class State:
    """What the routes share: config, keys, metrics, the batcher, the models once loaded."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.keys = KeyStore(cfg.keys, rate_dir=cfg.rate_dir)
        self.metrics = Metrics()
        self.limits = Limits(cfg.max_body, cfg.max_inputs, cfg.max_chars)
        self.models: dict[str, Any] = {}
        self.load_error: str | None = None
        self.batcher = Batcher(
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.max_wait_ms,
            max_queue=cfg.max_queue,
            metrics=self.metrics,
            parallel=cfg.parallel,
        )
        self.chat = ChatRunner(
            threads=cfg.parallel, max_queue=cfg.max_chat_queue, max_tokens=cfg.max_tokens, metrics=self.metrics
        )

    def load(self) -> None:
        """(thread) Load every model; ``/ready`` turns 200 when done."""
        try:
            import torch

            from peftkit.serve.models import load_models, parse_spec

            if self.cfg.threads:
                torch.set_num_threads(self.cfg.threads)
            served = load_models(
                [parse_spec(s) for s in self.cfg.models], merge_single=self.cfg.merge, precision=self.cfg.precision
            )
            self.models = {m.name: m for m in served}
            self.metrics.ready.set(len(served))
            log.info("ready: %s", ", ".join(f"{m.name} ({m.kind})" for m in served))
        except Exception as exc:  # reported by /ready and the log; the process stays up to say so
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    err: dict[str, Any] = {"type": "invalid_request_error" if status < 500 else "server_error", "message": message}
    if field:
        err["field"] = field
    return JSONResponse({"error": err}, status_code=status, headers=headers)


def _key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _visible(st: State, entry: Any) -> list[str]:
    """The served models a key may use: what an error about the model name may list (as ``/v1/models`` does)."""
    return [m for m in st.models if entry is None or entry.allows(m)]


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InputError(413, "body", f"request body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError(413, "body", f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(served: Any, probs: Any, request_id: str, tokens: int) -> dict[str, Any]:
    """vLLM ``/classify`` response shape, with TEI's label/score per input."""
    data = []
    for i, p in enumerate(probs):
        top = int(p.argmax())
        data.append({
            "index": i, "label": served.labels[top], "score": float(p[top]),
            "probs": [float(x) for x in p], "num_classes": len(served.labels),
        })  # fmt: skip
    return {
        "id": f"classify-{request_id}", "object": "list", "created": int(time.time()), "model": served.name,
        "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }  # fmt: skip


async def classify(request: Request) -> Response:
    st: State = request.app.state.peftkit
    entry = request.state.key = st.keys.authenticate(_key_of(request))  # 401 before anything about the body
    if not st.models:
        return _error(503, st.load_error or "models are still loading; see GET /ready", headers={"Retry-After": "2"})
    raw = await _read_body(request, st.limits.max_body)
    req = parse_classify(decode_body(raw, st.limits), list(st.models), st.limits, _visible(st, entry))
    request.state.model = req.model
    st.keys.authorize(entry, req.model)
    request.state.inputs = len(req.texts)
    if st.cfg.log_texts:
        request.state.texts = [mask(t) for t in req.texts + (req.pairs or [])]
    served = st.models[req.model]
    if served.engine is None:
        raise InputError(
            400, "model", f"model {req.model!r} is a decoder run: it answers POST /v1/chat/completions, not classify"
        )
    try:
        probs, tokens = await st.batcher.submit(served, req.texts, req.pairs)
    except QueueFull as exc:
        return _error(503, "server busy: the request queue is full", headers={"Retry-After": str(exc.retry_after)})
    st.metrics.observe_predictions(served.name, served.labels, probs)
    return JSONResponse(_answer(served, probs, request.state.request_id, tokens))


async def chat_completions(request: Request) -> Response:
    """OpenAI's chat completions (peftkit.serve.chat): the same auth, rate limit, metrics and logs as classify."""
    st: State = request.app.state.peftkit
    entry = request.state.key = st.keys.authenticate(_key_of(request))  # 401 before anything about the body
    if not st.models:
        return _error(503, st.load_error or "models are still loading; see GET /ready", headers={"Retry-After": "2"})
    raw = await _read_body(request, st.limits.max_body)
    req = parse_chat(
        decode_body(raw, st.limits), st.models, st.limits.max_chars, st.cfg.max_tokens, _visible(st, entry)
    )
    request.state.model = req.model
    st.keys.authorize(entry, req.model)
    request.state.inputs = len(req.messages)
    if st.cfg.log_texts:
        request.state.texts = [mask(m["content"]) for m in req.messages]
    served = st.models[req.model]
    try:
        st.chat.admit()
    except QueueFull as exc:
        return _error(
            503, "server busy: too many chat requests in flight", headers={"Retry-After": str(exc.retry_after)}
        )
    await st.chat.prepare(served, req)
    if req.stream:
        return StreamingResponse(
            st.chat.events(served, req, request.state.request_id), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )  # fmt: skip
    return JSONResponse(await st.chat.complete(served, req, request.state.request_id))


async def list_models(request: Request) -> Response:
    st: State = request.app.state.peftkit
    entry = request.state.key = st.keys.check(_key_of(request), None)
    models = [m.describe() for m in st.models.values() if entry is None or entry.allows(m.name)]
    return JSONResponse({"object": "list", "data": models})


def create_app(cfg: Any) -> FastAPI:
    """The app for ``cfg`` (a :class:`peftkit.serve.server.ServeConfig`)."""
    from peftkit.serve.playground import PAGE

    st = State(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st.batcher.start()
        if cfg.workers > 1:
            # a worker that answered before its models were loaded would 503 the requests the kernel hands
            # it; loading before startup completes keeps it from accepting until it can serve
            await asyncio.to_thread(st.load)
        else:  # one process: /health answers while the models load, /ready when they are
            threading.Thread(target=st.load, name="peftkit-load", daemon=True).start()
        yield
        await st.batcher.stop()  # uvicorn has already waited for in-flight requests (graceful shutdown)
        st.chat.shutdown()

    app = FastAPI(title="peftkit serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.peftkit = st
    app.add_api_route("/v1/classify", classify, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/health", lambda: {"status": "ok"}, methods=["GET"])

    @app.get("/ready")
    async def ready() -> Response:
        if st.models:
            return JSONResponse({"status": "ready", "models": list(st.models)})
        return _error(503, st.load_error or "loading models", headers={"Retry-After": "2"})

    @app.get("/metrics")
    async def metrics() -> Response:
        body, ctype = st.metrics.exposition()
        return Response(body, media_type=ctype)

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> str:
        return PAGE

    app.add_exception_handler(HTTPException, _http_error)  # unknown route (404), wrong method (405)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_middleware(AccessLog)
    return app


def _routes(app: Any) -> str:
    """What the app answers, from its own route table (``POST /v1/classify, ..., GET /``)."""
    return ", ".join(
        f"{'/'.join(sorted(set(r.methods) - {'HEAD'}))} {r.path}" for r in app.routes if getattr(r, "methods", None)
    )


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors in the shape of every other error here (not FastAPI's ``{"detail": ...}``)."""
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        message = f"no route {where}; this server answers {_routes(request.app)}"
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        message = f"{where}: method not allowed; use {allow or 'another method'}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, headers=exc.headers)


async def _input_error(request: Request, exc: InputError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _auth_error(request: Request, exc: AuthError) -> Response:
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return _error(exc.status, exc.message, "authorization" if exc.status == 401 else None, headers)


class AccessLog:
    """Request id, errors as JSON, metrics and one JSON access-log line per request (no keys, no raw texts).

    A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware`` (``app.middleware("http")``), which runs
    each request's app in a task of its own behind memory streams: measured at concurrency 1 that was about a
    millisecond a request. The line is written when the response has been sent, so a streamed chat answer is
    timed to its end."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        st: State = scope["app"].state.peftkit
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id, request.state.model, request.state.key = rid, None, None
        status: list[int] = []

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # never a traceback to the client; the log has it
            log.exception("request %s failed", rid)
            if not status:  # an answer already begun can only be cut short; it is logged with its status
                await _error(500, f"internal error (request id {rid}); the server log has the details")(
                    scope, receive, send_with_id
                )
        _log_request(st, request, rid, status[0] if status else 500, time.perf_counter() - t0)


def _log_request(st: State, request: Request, rid: str, code: int, seconds: float) -> None:
    route, model = request.url.path, getattr(request.state, "model", None) or ""
    if route in ("/v1/classify", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics", "/"):
        st.metrics.requests.labels(model, route, str(code)).inc()
        st.metrics.latency.labels(model, route).observe(seconds)
    key = getattr(request.state, "key", None)
    line = {
        "ts": round(time.time(), 3), "request_id": rid, "method": request.method, "path": route,
        "status": code, "ms": round(seconds * 1000, 2), "model": model or None,
        "key": key.name if key is not None else None, "inputs": getattr(request.state, "inputs", None),
        "client": request.client.host if request.client else None, "pid": os.getpid(),
    }  # fmt: skip
    if getattr(request.state, "texts", None) is not None:
        line["texts"] = request.state.texts
    access.info(json.dumps(line, ensure_ascii=False))
