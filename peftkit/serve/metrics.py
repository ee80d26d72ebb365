"""Prometheus metrics of the service (prometheus-client).

Besides traffic (requests by model/route/status, latency, batch sizes, queue depth), each model's
predicted-label counts and top-probability histogram are exported, so a shift in what a model answers
or a fall in its confidence shows on a dashboard and can raise an alert (docs/serving-alerts.yaml).

With ``--workers N`` every worker writes to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``peftkit serve``
before the workers start) and ``/metrics`` of any worker sums them all.
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
        self.ready = Gauge("peftkit_models_ready", "models loaded and served", registry=r, multiprocess_mode="max")

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
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
