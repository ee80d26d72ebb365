"""The peer a user would write by hand: a FastAPI endpoint calling a transformers pipeline per request.

Run: PEER_MODEL=/path/to/export uvicorn benchmarks.serve_peer:app --port 8001
(benchmarks/serve_load.py starts it for you.)
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

clf = pipeline("text-classification", model=os.environ["PEER_MODEL"], device="cpu")
app = FastAPI()


class Body(BaseModel):
    model: str | None = None
    input: str


@app.post("/v1/classify")
def classify(body: Body) -> dict:
    # a plain `def`: FastAPI runs it in its thread pool, one pipeline call per request
    out = clf(body.input, truncation=True)[0]
    return {"data": [{"index": 0, "label": out["label"], "score": out["score"]}]}


@app.get("/ready")
def ready() -> dict:
    return {"status": "ready"}
