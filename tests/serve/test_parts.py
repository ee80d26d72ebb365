"""The service's parts without a server: masking, keys, request checks, alert rules, CLI startup."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peftkit.errors import PeftkitError
from peftkit.serve.auth import AuthError, KeyStore, add_key, hash_key
from peftkit.serve.inputs import InputError, Limits, parse_classify
from peftkit.serve.masking import luhn_ok, mask

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("客户张三的手机号是13812345678，请回电", "客户张三的手机号是138****5678，请回电"),
        ("联系电话：+86 139 1234 5678", "联系电话：139****5678"),
        ("身份证号110105199003071234已核验", "身份证号[ID]已核验"),
        ("身份证 11010519900307123X", "身份证 [ID]"),
        ("请退款到银行卡6222021234567890128，谢谢", "请退款到银行卡[CARD ****0128]，谢谢"),
        ("卡号 4111 1111 1111 1111", "卡号 [CARD ****1111]"),
        ("邮箱zhang.san@example.com.cn有问题", "邮箱[EMAIL]有问题"),
        ("订单号1234567890123456不是卡号", "订单号1234567890123456不是卡号"),  # fails Luhn: an order id, kept
        ("手机１３８１２３４５６７８", "手机１３８****５６７８"),  # full-width digits
        ("价格12345元，电话12345678901", "价格12345元，电话12345678901"),  # not a mobile number (12...)
        # landlines: the area code and the last 4 digits stay
        ("北京办公室电话010-62345678，欢迎来电", "北京办公室电话010-****5678，欢迎来电"),
        ("深圳分公司：0755-12345678转8001", "深圳分公司：0755-****5678转8001"),
        ("分机010-62345678-8001", "分机010-****5678-8001"),
        ("座机(021)64381234", "座机(021)****1234"),
        ("固话01062345678", "固话010****5678"),
        ("海外请拨+86-755-8765-4321", "海外请拨+86-755-****4321"),
        ("请拨打（０２０）８７６５４３２１", "请拨打（０２０）****４３２１"),  # full-width
        # the old 15-digit ID cards (province code, YYMMDD)
        ("老身份证号码110105900307123已过期", "老身份证号码[ID]已过期"),
        # full-width ID, card and +86
        ("身份证号：１１０１０５１９９０１２０１１２３Ｘ", "身份证号：[ID]"),
        ("卡号６２２２　０２１２　３４５６　７８９０　１２８", "卡号[CARD ****０１２８]"),
        ("手机＋８６ １３８１２３４５６７８", "手机１３８****５６７８"),
    ],
)
def test_masking_on_chinese_examples(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "我2023年买的，1998年出生，2024-01-01 09:30到货",
        "价格￥1299.00，原价3999元，优惠12345元",
        "订购 20000 件，库存 0755 件，共12台",
        "交易流水号202312010000123已退款",  # 15 digits, but 20 is no province code
        "快递单号773123456789012",
        "邮编010010，股票代码002594，会议号 0531 2024",
        "订单号:0123456789，发票号码 04400170021112345678",
    ],
)
def test_masking_keeps_ordinary_numbers(text):
    assert mask(text) == text


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("6222021234567890128") and not luhn_ok("4111111111111112")


def test_keys_hashed_allowed_models_rate_and_reload(tmp_path):
    path = tmp_path / "keys.json"
    key = add_key(path, "crm", ["intent"], rate=1.0, burst=2)
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    store = KeyStore(path, env_text="")
    assert store.check(key, "intent").name == "crm"
    with pytest.raises(AuthError) as e:
        store.check(key, "sentiment")
    assert e.value.status == 403
    store.check(key, "intent")
    with pytest.raises(AuthError) as e:
        store.check(key, "intent")
    assert e.value.status == 429 and e.value.retry_after > 0
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(AuthError) as e:
        store.check(key, "intent")
    assert e.value.status == 401  # revoked without a restart
    path.write_text("{broken")
    time.sleep(0.01)
    with pytest.raises(AuthError):  # a broken file keeps the previous (empty) keys; no crash
        store.check(key, "intent")


def test_keys_from_the_environment_and_bad_files(tmp_path):
    env = json.dumps({"keys": [{"name": "env", "sha256": hash_key("s3cret"), "models": ["*"]}]})
    assert KeyStore(None, env_text=env).check("s3cret", "any").name == "env"
    assert KeyStore(None, env_text="").check(None, "any") is None  # no keys configured: open
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [{"name": "x", "sha256": "abc"}]}))
    with pytest.raises(PeftkitError, match=r"keys\[0\]\.sha256"):
        KeyStore(bad, env_text="")


def test_parse_classify_shapes():
    lim = Limits(max_inputs=4)
    assert parse_classify({"input": "x"}, ["m"], lim).texts == ["x"]  # one model: name optional
    req = parse_classify({"model": "m", "inputs": [["a", "b"]]}, ["m", "n"], lim)
    assert req.texts == ["a"] and req.pairs == ["b"]
    with pytest.raises(InputError) as e:
        parse_classify({"input": "x"}, ["m", "n"], lim)
    assert e.value.field == "model"


def test_alert_rules_in_the_docs_parse_and_use_exported_metrics():
    rules = yaml.safe_load((REPO / "docs" / "serving-alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"PeftkitHighErrorRate", "PeftkitHighP99Latency", "PeftkitConfidenceDrop"} <= set(alerts)
    for rule in alerts.values():
        assert rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
    text = " ".join(r["expr"] for r in alerts.values())
    for name in ("peftkit_requests_total", "peftkit_request_seconds_bucket", "peftkit_top_probability_bucket"):
        assert name in text


def test_cli_lists_the_commands_without_importing_fastapi_or_torch():
    code = (
        "import sys; from peftkit.cli import build_parser; p = build_parser(); "
        "print(sorted(m for m in ('fastapi', 'torch', 'uvicorn', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    helptext = subprocess.run(
        [sys.executable, "-m", "peftkit", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--max-wait-ms" in helptext and "--keys" in helptext and "--workers" in helptext


def test_batches_are_cut_into_chunks_of_similar_length():
    from peftkit.serve.batching import chunks

    rows = [(0, i, {"input_ids": [1] * n}) for i, n in enumerate([5] * 10 + [6, 7, 20, 21, 22] + [40] * 3)]
    got = [[len(r[2]["input_ids"]) for r in c] for c in chunks(rows, max_batch=8)]
    # a full chunk; then rows join until MIN_CHUNK (8) whatever their length; then a cut at 40 > 1.25 x 5
    assert got == [[5] * 8, [5, 5, 6, 7, 20, 21, 22, 40], [40, 40]]
    long_rows = [(0, i, {"input_ids": [1] * n}) for i, n in enumerate([10] * 8 + [12] + [30] * 8)]
    assert [len(c) for c in chunks(long_rows, max_batch=32)] == [9, 8]  # 12 <= 1.25 x 10 stays, 30 is cut
    assert all(len(c) <= 8 for c in got) and sum(map(len, got)) == len(rows)
    assert [len(c) for c in chunks(rows[:3], max_batch=1)] == [1, 1, 1]


def _served_texts(tiny_data) -> list[str]:
    return [json.loads(x)["text"] for x in tiny_data["dev"].read_text().splitlines()[:12]]


def test_precisions_serve_the_same_answers_closely(tiny_runs, tiny_data):
    import numpy as np

    from peftkit.serve.models import load_models

    texts = _served_texts(tiny_data)
    probs = {}
    for prec in ("float32", "bfloat16", "int8"):
        (m,) = load_models([("a", tiny_runs["a"])], precision=prec)
        assert m.kind == ("merged run" if prec == "float32" else f"merged run {prec}")
        enc = m.engine.encode(texts, None, m.max_length)
        probs[prec] = m.engine.probabilities(m.adapter, [{"input_ids": ids} for ids in enc["input_ids"]])
        assert probs[prec].dtype == np.float32 and np.allclose(probs[prec].sum(-1), 1, atol=1e-4)
    # bfloat16 keeps 8 bits of mantissa: the same distribution to about a percent; int8 coarser still
    assert np.abs(probs["bfloat16"] - probs["float32"]).max() < 0.03
    assert np.abs(probs["int8"] - probs["float32"]).max() < 0.1
    with pytest.raises(PeftkitError, match="--precision 'fp8'"):
        load_models([("a", tiny_runs["a"])], precision="fp8")


def test_a_lone_request_does_not_wait_for_company_but_concurrent_ones_are_gathered(tiny_runs, tiny_data):
    import asyncio

    from peftkit.serve.batching import Batcher
    from peftkit.serve.metrics import Metrics
    from peftkit.serve.models import load_models

    (m,) = load_models([("a", tiny_runs["a"])])
    texts = _served_texts(tiny_data)
    metrics = Metrics()

    def passes() -> tuple[float, float]:  # (forward passes, inputs) so far, from the batch-size histogram
        get = metrics.registry.get_sample_value
        return get("peftkit_batch_size_count") or 0.0, get("peftkit_batch_size_sum") or 0.0

    async def go() -> tuple[float, tuple[float, float]]:
        b = Batcher(max_batch=32, max_wait_ms=400, max_queue=64, metrics=metrics)
        b.start()
        await b.submit(m, texts[:1], None)  # warm-up
        t0 = time.perf_counter()
        for t in texts[:3]:  # one client, one request at a time: no 400 ms waits
            await b.submit(m, [t], None)
        lone = time.perf_counter() - t0
        before = passes()
        await asyncio.gather(*(b.submit(m, [t], None) for t in texts[:8]))  # eight at once: gathered
        after = passes()
        await b.stop()
        return lone, (after[0] - before[0], after[1] - before[1])

    lone, (n_passes, n_inputs) = asyncio.run(go())
    assert lone < 0.4, f"three sequential requests took {lone:.2f} s: the batcher waited for company"
    assert n_inputs == 8 and n_passes <= 2, (n_passes, n_inputs)


def test_a_request_that_fails_in_the_batch_fails_alone(tiny_runs, tiny_data):
    """Six requests gathered into one batch; one breaks the tokenizer (a lone surrogate, past validation), one
    breaks the forward pass: those two fail, the four others get the same answers as when sent alone."""
    import asyncio
    import dataclasses

    import numpy as np

    from peftkit.serve.batching import Batcher
    from peftkit.serve.models import load_models

    (m,) = load_models([("a", tiny_runs["a"])])
    texts = _served_texts(tiny_data)[:4]
    poison = m.engine.encode(["boom"], None, m.max_length)["input_ids"][0]

    class Picky:
        """The real engine, except that a forward pass holding the row of "boom" fails."""

        def __init__(self, engine):
            self.engine = engine

        def encode(self, *args):
            return self.engine.encode(*args)

        def probabilities(self, adapter, rows):
            if any(r["input_ids"] == poison for r in rows):
                raise RuntimeError("forward failed")
            return self.engine.probabilities(adapter, rows)

    picky = dataclasses.replace(m, engine=Picky(m.engine))

    async def go():
        b = Batcher(max_batch=32, max_wait_ms=300, max_queue=64)
        b.start()
        alone = [(await b.submit(picky, [t], None))[0] for t in texts]
        jobs = [b.submit(picky, [t], None) for t in texts[:2]]
        jobs += [b.submit(picky, ["ok", "\ud800"], None), b.submit(picky, ["good", "boom"], None)]
        jobs += [b.submit(picky, [t], None) for t in texts[2:]]
        got = await asyncio.gather(*jobs, return_exceptions=True)
        await b.stop()
        return alone, got

    alone, got = asyncio.run(go())
    assert isinstance(got[2], TypeError) and isinstance(got[3], RuntimeError), got[2:4]
    for want, res in zip(alone, got[:2] + got[4:]):
        assert not isinstance(res, BaseException), res
        np.testing.assert_allclose(res[0], want, atol=1e-5)


def _take_many(folder: str, n: int, out) -> None:
    from peftkit.serve.auth import KeyEntry, SharedBuckets

    b, entry = SharedBuckets(folder), KeyEntry("k", frozenset("*"), 1e-6, 30)
    out.put(sum(b.take(entry) == 0.0 for _ in range(n)))


def test_shared_buckets_hold_one_limit_across_processes(tmp_path):
    """Three processes take 40 tokens each from one key's bucket of 30 (and a rate that refills nothing):
    30 are granted in all, as one process alone would grant; per-process buckets would grant 90."""
    import multiprocessing as mp

    from peftkit.serve.auth import KeyEntry, LocalBuckets, SharedBuckets

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take_many, args=(str(tmp_path), 40, out)) for _ in range(3)]
    for p in procs:
        p.start()
    granted = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(granted) == 30
    entry = KeyEntry("k", frozenset("*"), 10.0, 1)
    local = LocalBuckets()
    assert local.take(entry) == 0.0 and 0.09 < local.take(entry) <= 0.1  # the wait: one token at 10/s
    shared = SharedBuckets(tmp_path / "other")
    assert shared.take(entry) == 0.0 and 0.09 < shared.take(entry) <= 0.1


def test_access_log_answers_an_unhandled_error_as_json_500_and_logs_it(caplog):
    """The ASGI access-log middleware: a route that raises gets a JSON 500 naming the request id, with the id in
    X-Request-ID; the access line says 500; an answer that went fine is logged once with its status."""
    from types import SimpleNamespace

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from peftkit.serve.app import AccessLog
    from peftkit.serve.metrics import Metrics

    def boom(request):
        raise RuntimeError("a bug")

    app = Starlette(routes=[Route("/v1/models", boom), Route("/health", lambda r: PlainTextResponse("ok"))])
    app.state.peftkit = SimpleNamespace(metrics=Metrics())
    app.add_middleware(AccessLog)
    with caplog.at_level("INFO", logger="peftkit.serve.access"), TestClient(app) as client:
        r = client.get("/v1/models", headers={"X-Request-ID": "abc123"})
        ok = client.get("/health")
    assert r.status_code == 500 and r.headers["x-request-id"] == "abc123"
    assert "abc123" in r.json()["error"]["message"] and "a bug" not in r.text
    assert ok.status_code == 200 and ok.headers["x-request-id"]
    lines = [json.loads(m.getMessage()) for m in caplog.records if m.name == "peftkit.serve.access"]
    assert [(x["path"], x["status"]) for x in lines] == [("/v1/models", 500), ("/health", 200)]
