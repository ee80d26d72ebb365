"""The real ``peftkit serve`` process over HTTP: round trip = predict, adapters, auth, bad input, metrics, batching."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _texts(tiny_data) -> list[str]:
    return [json.loads(x)["text"] for x in tiny_data["test"].read_text().splitlines()]


def test_classify_round_trip_equals_peftkit_predict(server, keys, tiny_runs, tiny_data):
    texts = _texts(tiny_data)
    r = httpx.post(server.url + "/v1/classify", json={"model": "a", "input": texts[:8]}, headers=_auth(keys["all"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "a" and len(body["data"]) == 8
    predicted = [json.loads(x)["label"] for x in (tiny_runs["a"] / "test_predictions.jsonl").read_text().splitlines()]
    assert [d["label"] for d in body["data"]] == predicted[:8]  # the file `peftkit predict` writes
    assert all(d["num_classes"] == 2 and abs(sum(d["probs"]) - 1) < 1e-5 for d in body["data"])
    assert r.headers["x-request-id"] and body["id"].endswith(r.headers["x-request-id"])
    assert body["usage"]["prompt_tokens"] >= 8 * 4  # tokens after encoding ([CLS] words [SEP]), not characters


def test_each_adapter_gives_its_own_runs_predictions(server, keys, tiny_runs, tiny_data, own_probs):
    """a and b share one base in the server; interleaved requests must still get each run's own numbers."""
    texts = _texts(tiny_data)[:6]
    own = {name: own_probs(tiny_runs[name], texts) for name in ("a", "b")}
    assert np.abs(own["a"] - own["b"]).max() > 1e-3  # the two runs really differ
    for name in ("a", "b", "a", "b"):
        r = httpx.post(server.url + "/v1/classify", json={"model": name, "input": texts}, headers=_auth(keys["all"]))
        got = np.array([d["probs"] for d in r.json()["data"]])
        np.testing.assert_allclose(got, own[name], atol=1e-5)
    models = httpx.get(server.url + "/v1/models", headers=_auth(keys["all"])).json()["data"]
    assert {m["id"]: m["served_as"] for m in models} == {
        "a": "adapter on a shared base",
        "b": "adapter on a shared base",
    }
    assert models[0]["labels"] == ["neg", "pos"]


def test_pairs_and_the_tei_key(server, keys):
    r = httpx.post(
        server.url + "/v1/classify",
        json={"model": "a", "inputs": [["good day", "bad movie"], ["a", "b"]]},
        headers=_auth(keys["all"]),
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 2


def test_auth_401_403_429(server, keys):
    url, body = server.url + "/v1/classify", {"model": "b", "input": "good movie"}
    assert httpx.post(url, json=body).status_code == 401
    bad = httpx.post(url, json=body, headers=_auth("pk-not-a-key"))
    assert bad.status_code == 401 and bad.json()["error"]["field"] == "authorization"
    assert httpx.post(url, json=body, headers={"X-API-Key": keys["only_a"]}).status_code == 403
    assert httpx.post(url, json={**body, "model": "a"}, headers={"X-API-Key": keys["only_a"]}).status_code == 200
    ids = [m["id"] for m in httpx.get(server.url + "/v1/models", headers=_auth(keys["only_a"])).json()["data"]]
    assert ids == ["a"]
    codes = [httpx.post(url, json=body, headers=_auth(keys["slow"])).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    limited = httpx.post(url, json=body, headers=_auth(keys["slow"]))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_the_key_is_checked_before_the_body(server, keys):
    """No or a bad key: 401 whatever the body holds (it used to be parsed first: a 404 listing the served
    models, a 422, a 413); a key's errors about the model name list only the models it may use."""
    url = server.url + "/v1/classify"
    bodies = [b"not json", b'{"model": "zz", "input": "x"}', b'{"model": "a", "input": 5}', b"x" * 30_000]
    for headers in ({}, _auth("pk-not-a-key")):
        for body in bodies:
            r = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"})
            assert r.status_code == 401 and r.json()["error"]["field"] == "authorization", (body[:30], r.text)
            assert "served" not in r.text
        chat = httpx.post(server.url + "/v1/chat/completions", json={"model": "zz", "messages": []}, headers=headers)
        assert chat.status_code == 401, chat.text
    only_a = {"X-API-Key": keys["only_a"]}
    unknown = httpx.post(url, json={"model": "zz", "input": "x"}, headers=only_a)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"].endswith("served: a")
    assert httpx.post(url, json={"model": "a", "input": 5}, headers=only_a).status_code == 422  # then the body
    assert httpx.post(url, json={"model": "b", "input": "x"}, headers=only_a).status_code == 403  # then the model


def test_keys_rotate_without_restart(server, keys):
    from peftkit.serve.auth import add_key

    fresh = add_key(keys["path"], "rotated-in", ["a"])
    url = server.url + "/v1/classify"
    assert httpx.post(url, json={"model": "a", "input": "fine"}, headers=_auth(fresh)).status_code == 200
    data = json.loads(keys["path"].read_text())
    data["keys"] = [k for k in data["keys"] if k["name"] != "rotated-in"]
    keys["path"].write_text(json.dumps(data))
    assert httpx.post(url, json={"model": "a", "input": "fine"}, headers=_auth(fresh)).status_code == 401


BAD_INPUTS = [
    (b"not json", 400, "body"),
    (b"[" * 10_000, 400, "body"),  # nested past the JSON parser's depth (RecursionError, a 500) under the body limit
    (b'{"model": "a", "input": ' + b"[" * 9_000 + b"]" * 9_000 + b"}", 400, "body"),
    (b"\xff\xfe{}", 400, "body"),
    (b"[1, 2]", 422, "body"),
    (b'{"model": "a"}', 422, "input"),
    (b'{"model": 3, "input": "x"}', 422, "model"),
    (b'{"model": "zz", "input": "x"}', 404, "model"),
    (b'{"model": "a", "input": 5}', 422, "input"),
    (b'{"model": "a", "input": []}', 422, "input"),
    (b'{"model": "a", "input": ["ok", "   "]}', 422, "input[1]"),
    (b'{"model": "a", "input": ["ok", 7]}', 422, "input[1]"),
    (b'{"model": "a", "input": [["x", "y", "z"]]}', 422, "input[0]"),
    (b'{"model": "a", "input": ["x", ["a", "b"]]}', 422, "input[1]"),
    (json.dumps({"model": "a", "input": ["x"] * 9}).encode(), 413, "input"),
    (json.dumps({"model": "a", "input": "x" * 2001}).encode(), 422, "input[0]"),
    (json.dumps({"model": "a", "input": "x" * 30000}).encode(), 413, "body"),
    # valid JSON, but a lone surrogate is no text: the tokenizer raised TypeError (a 500)
    (b'{"model": "a", "input": ["ok", "fine", "\\ud800"]}', 422, "input[2]"),
    (b'{"model": "a", "input": [["ok", "x\\udc00"]]}', 422, "input[0][1]"),
]


@pytest.mark.parametrize(
    ("raw", "status", "field"), BAD_INPUTS, ids=[f"{s}-{f}-{i}" for i, (_, s, f) in enumerate(BAD_INPUTS)]
)
def test_bad_input_is_a_4xx_naming_the_field(server, keys, raw, status, field):
    r = httpx.post(
        server.url + "/v1/classify", content=raw, headers={**_auth(keys["all"]), "Content-Type": "application/json"}
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"]
    assert "Traceback" not in r.text


def test_a_bad_text_fails_only_its_own_request_not_its_batch(server, keys):
    """One request with a lone surrogate among five good ones sent at once (the 40 ms window gathers them):
    it gets its 422, the others their answers (it used to fail the whole batch with 500s)."""
    bad = b'{"model": "a", "input": ["ok", "fine", "\\ud800"]}'

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=_auth(keys["all"]), timeout=30) as c:
            good = [c.post("/v1/classify", json={"model": "a", "input": f"good day {i}"}) for i in range(5)]
            odd = c.post("/v1/classify", content=bad, headers={"Content-Type": "application/json"})
            return await asyncio.gather(*good[:2], odd, *good[2:])

    rs = asyncio.run(burst())
    assert [r.status_code for r in rs] == [200, 200, 422, 200, 200, 200], [r.text for r in rs]
    assert rs[2].json()["error"]["field"] == "input[2]"
    assert all(len(r.json()["data"]) == 1 for i, r in enumerate(rs) if i != 2)


def test_server_keeps_serving_after_bad_inputs_and_logs_no_keys_or_texts(server, keys):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    secret = "confidential 13812345678"
    assert (
        httpx.post(
            server.url + "/v1/classify", json={"model": "a", "input": secret}, headers=_auth(keys["all"])
        ).status_code
        == 200
    )
    log = server.log.read_text(encoding="utf-8")
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert lines and all({"request_id", "status", "ms", "path"} <= set(x) for x in lines)
    assert any(x["key"] == "all" for x in lines)
    for k in ("all", "only_a", "slow"):
        assert keys[k] not in log
    assert "13812345678" not in log and "confidential" not in log  # texts are not logged by default


def test_concurrent_requests_are_batched_and_metrics_move(server, keys, metric):
    before = httpx.get(server.url + "/metrics").text

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, headers=_auth(keys["all"])) as c:
            rs = await asyncio.gather(
                *(c.post("/v1/classify", json={"model": "a", "input": f"good day {i}"}) for i in range(12))
            )
        return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * 12
    assert httpx.post(server.url + "/v1/classify", json={"model": "a", "input": "x"}).status_code == 401
    after = httpx.get(server.url + "/metrics").text
    n = metric(after, "peftkit_batch_size_count") - metric(before, "peftkit_batch_size_count")
    total = metric(after, "peftkit_batch_size_sum") - metric(before, "peftkit_batch_size_sum")
    assert 0 < n < 12 and total == 12  # 12 one-text requests went through in fewer forward passes
    ones = metric(after, "peftkit_batch_size_bucket", le="1.0") - metric(before, "peftkit_batch_size_bucket", le="1.0")
    assert ones < n  # at least one pass held more than one request
    ok = dict(model="a", route="/v1/classify", status="200")
    assert metric(after, "peftkit_requests_total", **ok) - metric(before, "peftkit_requests_total", **ok) == 12

    def moved(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert sum(moved("peftkit_predicted_label_total", model="a", label=x) for x in ("neg", "pos")) == 12
    assert moved("peftkit_top_probability_count", model="a") == 12
    # the refused request is counted, without a model: the key is checked before the body is read
    assert moved("peftkit_requests_total", model="", route="/v1/classify", status="401") == 1
    assert "peftkit_queue_depth" in after and "peftkit_request_seconds_bucket" in after


def test_unknown_routes_and_wrong_methods_answer_in_the_error_shape(server, keys):
    """404 and 405 come as {"error": {type, message}} like every other error (they were FastAPI's {"detail"})."""
    for method, path, status in [("GET", "/v1/classify", 405), ("DELETE", "/v1/models", 405), ("GET", "/v2/x", 404)]:
        r = httpx.request(method, server.url + path, headers=_auth(keys["all"]))
        assert r.status_code == status and set(r.json()) == {"error"}, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and path in err["message"], err
    assert "POST" in httpx.get(server.url + "/v1/classify").headers["allow"]
    routes = (
        "POST /v1/classify, POST /v1/chat/completions, GET /v1/models, GET /health, GET /ready, GET /metrics, GET /"
    )
    assert f"this server answers {routes}" in httpx.get(server.url + "/v2/x").json()["error"]["message"]


def test_a_full_queue_answers_503_with_retry_after_and_the_server_keeps_serving(
    tiny_runs, tmp_path, server_cls, metric
):
    """--max-queue 8 holds one request of 8 inputs: of 16 such requests sent at once, those arriving while one
    is queued or running are refused at once with 503 + Retry-After (no backlog). At most 5 bursts."""
    srv = server_cls(
        [f"a={tiny_runs['a']}", "--max-inputs", "8", "--max-queue", "8", "--max-batch", "8", "--threads", "1"],
        tmp_path / "log", timeout=300,
    )  # fmt: skip
    body = {"model": "a", "input": [" ".join(["good movie"] * 15) + f" {i}" for i in range(8)]}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            return await asyncio.gather(*(c.post("/v1/classify", json=body) for _ in range(16)))

    try:
        srv.wait_ready()
        seen: list[httpx.Response] = []
        for _ in range(5):
            seen += asyncio.run(burst())
            if any(r.status_code == 503 for r in seen):
                break
        codes = [r.status_code for r in seen]
        assert set(codes) == {200, 503}, codes
        for r in seen:
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"]["type"] == "server_error" and "queue is full" in r.json()["error"]["message"]
        assert httpx.post(srv.url + "/v1/classify", json=body, timeout=30).status_code == 200  # still serving
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "peftkit_requests_total", model="a", route="/v1/classify", status="503") == codes.count(503)
        assert metric(text, "peftkit_queue_depth") == 0  # nothing left behind
    finally:
        srv.stop()


def test_playground_page_is_offline_html(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/classify" in r.text and "http://" not in r.text and "https://" not in r.text
