"""Prometheus metrics of the service (prometheus-client).

Besides traffic (requests by model/route/status, latency, batch sizes, queue depth), each model's
predicted-label counts and top-probability histogram are exported, so a shift in what a model answers
or a fall in its confidence shows on a dashboard and can raise an alert (docs/serving-alerts.yaml).

With ``--workers N`` every worker writes to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``peftkit serve``
before the workers start) and ``/metrics`` of any worker sums them all. Counters and histograms keep a dead
worker's counts (they only grow); the gauges are ``live*`` modes, which count live processes only -- but
prometheus-client leaves finding the dead to the server (gunicorn's ``child_exit`` hook calls
``mark_process_dead``), and uvicorn has no such hook, so ``/metrics`` drops the gauge files of workers that
are gone before it reads (a killed worker's queue depth would otherwise stay in the sum).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PROB_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    """Every metric the app updates, on one registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("peftkit_requests", "HTTP requests answered", ["model", "route", "status"], registry=r)
        self.latency = Histogram(
            "peftkit_request_seconds", "request latency, arrival to answer", ["model", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram("peftkit_batch_size", "inputs per forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "peftkit_queue_depth", "inputs waiting or running", registry=r, multiprocess_mode="livesum"
        )
        self.inputs = Counter("peftkit_inputs", "texts classified", ["model"], registry=r)
        self.predicted = Counter("peftkit_predicted_label", "answers by label", ["model", "label"], registry=r)
        self.top_prob = Histogram(
            "peftkit_top_probability", "probability of the answered label", ["model"],
            buckets=PROB_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "peftkit_tokens", "chat completion tokens: kind=prompt (read) or completion (generated)", ["model", "kind"],
            registry=r,
        )  # fmt: skip
        self.ready = Gauge("peftkit_models_ready", "models loaded and served", registry=r, multiprocess_mode="livemax")

    def observe_predictions(self, model: str, labels: list[str], probs: np.ndarray) -> None:
        """Count each answer's label and record how sure the model was."""
        top = probs.argmax(-1)
        self.inputs.labels(model).inc(len(top))
        for i, p in zip(top, probs[np.arange(len(top)), top]):
            self.predicted.labels(model, labels[int(i)]).inc()
            self.top_prob.labels(model).observe(float(p))

    def exposition(self) -> tuple[bytes, str]:
        """The text format for ``GET /metrics`` (all workers' values when running multiprocess)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry: Any = self.registry
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if path:
            from prometheus_client import multiprocess

            forget_dead_workers(path)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def forget_dead_workers(path: str) -> list[int]:
    """Remove the ``live*`` gauge files of processes that are gone (or zombies, or whose pid a younger process
    has taken since), so live gauges count live workers only; the pids forgotten."""
    import glob
    import re

    from prometheus_client import multiprocess

    written: dict[int, float] = {}  # pid -> when its oldest live-gauge file was made
    for f in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = re.search(r"_(\d+)\.db$", f)
        try:
            if m:
                pid = int(m.group(1))
                written[pid] = min(written.get(pid, float("inf")), os.path.getmtime(f))
        except OSError:  # another worker forgot it just now
            continue
    dead = sorted(pid for pid, t in written.items() if not _alive(pid, t))
    for pid in dead:
        try:
            multiprocess.mark_process_dead(pid, path)
        except FileNotFoundError:  # another worker's /metrics removed it between the glob and the remove
            pass
    return dead


def _alive(pid: int, written: float) -> bool:
    """Whether the process that wrote a file at ``written`` (its mtime) still runs."""
    import psutil

    try:
        p = psutil.Process(pid)
        # a zombie was killed and is not reaped yet; a process started after the file was written is another one
        return p.status() != psutil.STATUS_ZOMBIE and p.create_time() <= written + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists, another user's: keep the file
        return True
