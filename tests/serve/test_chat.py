"""``POST /v1/chat/completions`` on a real ``peftkit serve`` process with a tiny decoder run: the answer equals
peftkit's own greedy generation, usage and finish reasons, streaming, auth, bad input, the OpenAI client."""

from __future__ import annotations

import json

import httpx
import pytest

MESSAGES = [{"role": "user", "content": "the movie was good"}]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def own(tiny_chat_run):
    """peftkit's own generation for the run, reloaded from disk: ``own(messages, max_new_tokens)`` → (prompt ids,
    answer ids cut at the first stop token, answer text), as `peftkit generate` computes them."""
    from peftkit import load_run
    from peftkit_plugins.causal_lm.chat import render, run_template, stop_ids
    from peftkit_plugins.causal_lm.generation import generate_ids

    setup, model = load_run(tiny_chat_run)
    tok = setup.tokenizer
    template = run_template(tok, setup.tparams)
    stop = stop_ids(tok, template)

    def answer(messages, max_new_tokens):
        prompt = tok(render(tok, messages, template, prompt=True), add_special_tokens=False)["input_ids"]
        ids, _ = generate_ids(
            model, [prompt], pad_id=int(tok.pad_token_id), stop=stop, max_new_tokens=max_new_tokens,
            batch_size=1, device="cpu",
        )  # fmt: skip
        return prompt, ids[0], tok.decode(ids[0], skip_special_tokens=True)

    answer.stop = stop
    return answer


def _chat(server, key, **body):
    return httpx.post(
        server.url + "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES, **body}, headers=_auth(key)
    )


def test_greedy_answer_equals_peftkit_generation_with_usage(chat_server, keys, own):
    r = _chat(chat_server, keys["all"], temperature=0, max_tokens=16)
    assert r.status_code == 200, r.text
    body = r.json()
    prompt, ids, text = own(MESSAGES, 16)
    assert body["object"] == "chat.completion" and body["model"] == "chat"
    assert body["id"] == f"chatcmpl-{r.headers['x-request-id']}" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"] == {"role": "assistant", "content": text}
    stopped = len(ids) < 16  # generate_ids cuts the stop token off
    assert choice["finish_reason"] == ("stop" if stopped else "length")
    assert body["usage"] == {
        "prompt_tokens": len(prompt),
        "completion_tokens": len(ids) + stopped,  # the stop token that ended the answer counts
        "total_tokens": len(prompt) + len(ids) + stopped,
    }


def test_finish_reason_length_at_max_tokens_and_stop_strings(chat_server, keys, own):
    _, ids, text = own(MESSAGES, 1)
    r = _chat(chat_server, keys["all"], temperature=0, max_completion_tokens=1).json()
    assert ids and r["choices"][0]["finish_reason"] == "length"  # one token, not a stop token
    assert r["choices"][0]["message"]["content"] == text and r["usage"]["completion_tokens"] == 1
    _, _, full = own(MESSAGES, 16)
    stop = full[1:2]  # a stop string inside the greedy answer: the text ends just before it
    r = _chat(chat_server, keys["all"], temperature=0, max_tokens=16, stop=[stop, "zzz"]).json()
    assert r["choices"][0]["message"]["content"] == full[: full.find(stop)]
    assert r["choices"][0]["finish_reason"] == "stop"


def _events(response: httpx.Response) -> list:
    lines = [x for x in response.text.split("\n\n") if x.strip()]
    assert all(x.startswith("data: ") for x in lines) and lines[-1] == "data: [DONE]"
    return [json.loads(x[6:]) for x in lines[:-1]]


def test_streaming_sends_chunks_that_add_up_to_the_answer(chat_server, keys, own):
    _, _, text = own(MESSAGES, 16)
    body = {"temperature": 0, "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True}}
    r = _chat(chat_server, keys["all"], **body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r)
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert len({e["id"] for e in events}) == 1 and events[0]["id"] == f"chatcmpl-{r.headers['x-request-id']}"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]]
    assert "".join(pieces) == text
    finish = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
    assert finish[-1] in ("stop", "length") and set(finish[:-1]) == {None}
    assert events[-1]["choices"] == [] and events[-1]["usage"] == _chat(chat_server, keys["all"], **{
        **body, "stream": False, "stream_options": None}).json()["usage"]  # fmt: skip


def test_same_seed_same_sampled_answer(chat_server, keys):
    answers = [_chat(chat_server, keys["all"], seed=7, temperature=1.5, max_tokens=8).json() for _ in range(2)]
    assert answers[0]["choices"] == answers[1]["choices"]


def test_auth_applies_to_chat(chat_server, keys):
    url = chat_server.url + "/v1/chat/completions"
    body = {"model": "chat", "messages": MESSAGES, "max_tokens": 2}
    no_key = httpx.post(url, json=body)
    assert no_key.status_code == 401 and no_key.json()["error"]["field"] == "authorization"
    assert httpx.post(url, json=body, headers=_auth("pk-not-a-key")).status_code == 401
    assert httpx.post(url, json=body, headers=_auth(keys["only_a"])).status_code == 403
    codes = [httpx.post(url, json=body, headers=_auth(keys["slow"])).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    listed = httpx.get(chat_server.url + "/v1/models", headers=_auth(keys["all"])).json()["data"]
    chat = next(m for m in listed if m["id"] == "chat")
    assert chat["endpoints"] == ["/v1/chat/completions"] and chat["task"] == "lm/sft" and chat["max_length"] == 64
    assert [
        m["id"] for m in httpx.get(chat_server.url + "/v1/models", headers=_auth(keys["only_a"])).json()["data"]
    ] == ["a"]


LONG = " ".join(["good"] * 70)  # over the tiny Llama's 64-token context once templated
BAD_CHATS = [
    ({"messages": None}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"messages": "hi"}, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "x" * 2001}]}, 400, "messages[0].content"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 17}, 400, "max_tokens"),
    ({"max_tokens": "5"}, 400, "max_tokens"),
    ({"max_completion_tokens": True}, 400, "max_completion_tokens"),
    ({"temperature": 3}, 400, "temperature"),
    ({"temperature": "hot"}, 400, "temperature"),
    ({"top_p": 0}, 400, "top_p"),
    ({"n": 2}, 400, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"stop": 3}, 400, "stop"),
    ({"stop": ["a", "\ud800"]}, 400, "stop[1]"),  # a lone surrogate: valid JSON, not text
    ({"messages": [{"role": "user", "content": "hi \udfff"}]}, 400, "messages[0].content"),
    ({"seed": 1.5}, 400, "seed"),
    ({"stream": "yes"}, 400, "stream"),
    ({"tools": [{"type": "function"}]}, 400, "tools"),
    ({"logprobs": True}, 400, "logprobs"),
    ({"messages": [{"role": "user", "content": LONG}]}, 400, "messages"),
    ({"messages": [{"role": "user", "content": " ".join(["good"] * 50)}], "max_tokens": 16}, 400, "max_tokens"),
    ({"model": "a"}, 400, "model"),
    ({"model": "zz"}, 404, "model"),
    ({"model": 3}, 400, "model"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "status", "field"), BAD_CHATS, ids=[f"{s}-{f}" for _, s, f in BAD_CHATS])
def test_bad_chat_input_is_a_4xx_naming_the_field(chat_server, keys, change, status, field):
    body = {"model": "chat", "messages": MESSAGES, **change}
    r = httpx.post(  # json.dumps escapes lone surrogates as \udXXX, which httpx's json= cannot encode
        chat_server.url + "/v1/chat/completions",
        content=json.dumps({k: v for k, v in body.items() if v is not None}),
        headers={**_auth(keys["all"]), "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == err["param"] == field and err["message"] and "Traceback" not in r.text


def test_classify_refuses_the_decoder_and_metrics_and_logs_cover_chat(chat_server, keys, metric):
    r = httpx.post(chat_server.url + "/v1/classify", json={"model": "chat", "input": "x"}, headers=_auth(keys["all"]))
    assert r.status_code == 400 and r.json()["error"]["field"] == "model" and "chat/completions" in r.text
    before = httpx.get(chat_server.url + "/metrics").text
    secret = "confidential 13812345678"
    r = _chat(chat_server, keys["all"], messages=[{"role": "user", "content": secret}], max_tokens=3)
    assert r.status_code == 200
    after = httpx.get(chat_server.url + "/metrics").text
    ok = dict(model="chat", route="/v1/chat/completions", status="200")
    assert metric(after, "peftkit_requests_total", **ok) - metric(before, "peftkit_requests_total", **ok) == 1
    lat = dict(model="chat", route="/v1/chat/completions")
    assert (
        metric(after, "peftkit_request_seconds_count", **lat) - metric(before, "peftkit_request_seconds_count", **lat)
        == 1
    )
    for kind in ("prompt", "completion"):
        moved = metric(after, "peftkit_tokens_total", model="chat", kind=kind) - metric(
            before, "peftkit_tokens_total", model="chat", kind=kind
        )
        assert moved == r.json()["usage"][f"{kind}_tokens"]
    log = chat_server.log.read_text(encoding="utf-8")
    line = next(json.loads(x) for x in log.splitlines() if r.headers["x-request-id"] in x and x.startswith("{"))
    assert line["path"] == "/v1/chat/completions" and line["key"] == "all" and line["inputs"] == 1
    assert "13812345678" not in log and "confidential" not in log and keys["all"] not in log


def test_concurrent_chats_all_answer_greedily(chat_server, keys, own):
    import asyncio

    _, _, text = own(MESSAGES, 8)

    async def burst() -> list:
        async with httpx.AsyncClient(base_url=chat_server.url, headers=_auth(keys["all"]), timeout=60) as c:
            body = {"model": "chat", "messages": MESSAGES, "temperature": 0, "max_tokens": 8}
            health = c.get("/health")
            return await asyncio.gather(health, *(c.post("/v1/chat/completions", json=body) for _ in range(6)))

    health, *chats = asyncio.run(burst())
    assert health.status_code == 200
    assert [r.json()["choices"][0]["message"]["content"] for r in chats] == [text] * 6


def test_the_openai_client_talks_to_it(chat_server, keys, own):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=chat_server.url + "/v1", api_key=keys["all"], max_retries=0)
    _, _, text = own(MESSAGES, 16)
    out = client.chat.completions.create(model="chat", messages=MESSAGES, temperature=0, max_tokens=16)
    assert out.choices[0].message.content == text and out.choices[0].message.role == "assistant"
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    stream = client.chat.completions.create(model="chat", messages=MESSAGES, temperature=0, max_tokens=16, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    assert "chat" in [m.id for m in client.models.list()]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="chat", messages=MESSAGES, n=2)
    assert bad.value.param == "n"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=chat_server.url + "/v1", api_key="pk-wrong", max_retries=0).models.list()
