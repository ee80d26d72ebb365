"""The causal-lm objective and the lm/sft and lm/text tasks: answer-only loss masks on real chat-template output,
bad input, truncation, packing, generation (left-padded, deterministic) and its metrics."""

from __future__ import annotations

import json
import logging
import math

import pytest

from peftkit import DataError, EncodeContext, Example, PeftkitError
from peftkit.kit.cache import MARKER, cache_root
from peftkit_plugins.causal_lm.chat import ChatExample, to_messages
from peftkit_plugins.causal_lm.objective import IGNORE, CausalLM
from peftkit_plugins.causal_lm.textmetrics import corpus_bleu, generation_metrics, rouge_l, tokens

# packaged:gemma-3-270m's converted folders where peftkit keeps them ($PEFTKIT_CACHE, else ~/.cache/peftkit), finished
# ones only (their completeness marker is written last); the tests that need one are skipped without it.
GEMMA = [p for p in sorted((cache_root() / "models").glob("gemma-3-270m-*/")) if (p / MARKER).is_file()]
CHAT = [
    {"role": "system", "content": "你是客服。"},
    {"role": "user", "content": "怎么退款？"},
    {"role": "assistant", "content": "在订单页点退款。"},
    {"role": "user", "content": "多久到账？"},
    {"role": "assistant", "content": "三个工作日。"},
]


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _encode(examples, tok, split="train", max_length=64, **options):
    return CausalLM().encode(examples, tok, EncodeContext(max_length=max_length, split=split, options=options))


@pytest.mark.skipif(
    not GEMMA, reason=f"no converted packaged:gemma-3-270m folder in {cache_root() / 'models'} (set PEFTKIT_CACHE)"
)
def test_answer_only_labels_on_gemma_chat_template():
    """On Gemma's real template: the labelled tokens are exactly the assistant turns (content + <end_of_turn>),
    every other token (system, user turns, the template's role markers) carries -100, and the ids are the
    tokenisation of the full rendered conversation."""
    tok = _tok(GEMMA[0])
    enc = _encode([ChatExample("怎么退款？", messages=CHAT)], tok, max_length=256)
    ids, labels = enc.input_ids[0], enc.labels[0]
    full = tok.apply_chat_template(CHAT, tokenize=False)
    assert tok.decode(ids) == full
    answer = [t for t, lab in zip(ids, labels) if lab != IGNORE]
    assert tok.decode(answer) == "在订单页点退款。<end_of_turn>\n三个工作日。<end_of_turn>\n"
    prompt = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])
    assert "怎么退款" in prompt and "多久到账" in prompt and "你是客服" in prompt
    assert "退款。" not in prompt.replace("怎么退款？", "")
    # the generation prompt is the conversation up to the last answer, as apply_chat_template writes it
    assert tok.decode(enc.prompts[0]) == tok.apply_chat_template(CHAT[:-1], tokenize=False, add_generation_prompt=True)
    assert enc.references == ["三个工作日。"]
    assert enc.stop[-1] == tok.convert_tokens_to_ids("<end_of_turn>")


def test_prompt_tokens_carry_no_loss(tiny_llama):
    """The model's loss on a collated batch equals cross-entropy over the answer tokens alone, and does not move
    when every prediction of a prompt token is made arbitrarily wrong inside the model's forward (while wrecking
    one answer prediction does move it). The prompt is found from the template, not from the labels under test."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peftkit_plugins.causal_lm.chat import TEMPLATES

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    msgs = [{"role": "user", "content": "the movie was good"}, {"role": "assistant", "content": "good"}]
    enc = _encode([ChatExample("x", messages=msgs)] * 2, tok, template="chatml")
    batch = enc.collate([0, 1], 0)
    prompt_text = tok.apply_chat_template(
        msgs[:1], chat_template=TEMPLATES["chatml"], add_generation_prompt=True, tokenize=False
    )
    prompt = tok(prompt_text, add_special_tokens=False)["input_ids"]
    n = batch["input_ids"].shape[1]
    assert batch["input_ids"][0, : len(prompt)].tolist() == prompt and 0 < len(prompt) < n - 1
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    out = model(**batch)
    every = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # all positions
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    assert keep.sum(1).tolist() == [n - len(prompt)] * 2  # exactly the tokens after the prompt are labelled
    by_hand = torch.nn.functional.cross_entropy(every[:, :-1][keep], labels[keep])
    assert torch.allclose(out.loss, by_hand, atol=1e-6)

    # Wreck the model's own predictions inside its forward: noise (x100) on the final hidden state, which the
    # output layer maps position by position, so only the logits at the chosen positions change. Both the
    # training batch (output layer on answer positions only) and a plain forward with `labels` are checked.
    def loss_with_wrecked(positions):
        def hook(module, args, hidden):
            hidden = hidden.clone()
            hidden[positions] = torch.randn_like(hidden[positions]) * 100
            return hidden

        handle = model.model.norm.register_forward_hook(hook)
        try:
            with torch.no_grad():
                ids, mask = batch["input_ids"], batch["attention_mask"]
                return model(**batch).loss, model(input_ids=ids, attention_mask=mask, labels=batch["labels"]).loss
        finally:
            handle.remove()

    predicts_prompt = torch.zeros_like(batch["labels"], dtype=torch.bool)
    predicts_prompt[:, : len(prompt) - 1] = True  # position t predicts token t+1, a prompt token up to here
    ref = out.loss.detach()
    torch.manual_seed(1)
    trained, plain = loss_with_wrecked(predicts_prompt)
    assert torch.allclose(trained, ref, atol=1e-5) and torch.allclose(plain, ref, atol=1e-5)
    # the control: the same noise on the position that predicts the first answer token moves both losses
    first_answer = torch.zeros_like(predicts_prompt)
    first_answer[0, len(prompt) - 1] = True
    trained, plain = loss_with_wrecked(first_answer)
    assert abs(float(trained - ref)) > 0.1 and abs(float(plain - ref)) > 0.1


def test_output_layer_runs_on_answer_positions_only_with_the_same_gradients(tiny_llama):
    """The collated batch asks the model for the logits of the answer positions only (fewer than the sequence),
    and the loss and every gradient equal those of the plain full-sequence forward with ``labels``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    rows = [
        [{"role": "user", "content": "the movie was good and long"}, {"role": "assistant", "content": "good"}],
        [{"role": "user", "content": "bad"}, {"role": "assistant", "content": "bad and not good at all"}],
    ]
    enc = _encode([ChatExample("x", messages=m) for m in rows], tok, template="chatml")
    batch = enc.collate([0, 1], 0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    sliced = model(**batch)
    assert sliced.logits.shape[1] == batch["logits_to_keep"].shape[1] < batch["input_ids"].shape[1] - 1
    sliced.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    plain.loss.backward()
    assert torch.allclose(sliced.loss, plain.loss, atol=1e-6)
    plain_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and grads.keys() == plain_grads.keys()
    assert all(torch.allclose(grads[n], plain_grads[n], atol=1e-6) for n in grads)


def test_a_model_without_logits_to_keep_is_refused_at_setup(tiny_llama):
    """A decoder whose forward cannot slice its output layer is named at setup, not a TypeError at step one."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    assert CausalLM().head_modules(model, set()) == []

    class OldDecoder(type(model)):
        def forward(self, input_ids=None, attention_mask=None, labels=None):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    model.__class__ = OldDecoder
    with pytest.raises(PeftkitError, match="OldDecoder.forward\\(\\) takes no logits_to_keep"):
        CausalLM().head_modules(model, set())


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "unknown role 'bot'"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}, "unknown from 'robot'"),
        ({"text": "hello"}, "needs 'messages'"),
        ({"instruction": "Q", "output": None}, r"train.jsonl:3: field 'output' is null, not a string"),
        ({"instruction": None, "output": "A"}, r"train.jsonl:3: field 'instruction' is null, not a string"),
        ({"instruction": "Q", "output": ["A"]}, r"field 'output' is list \['A'\], not a string"),
        ({"instruction": "Q", "input": 3, "output": "A"}, r"field 'input' is int 3, not a string, null or absent"),
    ],
)
def test_bad_rows_are_clear_errors(row, error):
    with pytest.raises(DataError, match=error):
        to_messages(row, "train.jsonl:3")


def test_a_null_alpaca_answer_names_the_file_and_line_never_trains_none(tmp_path):
    from peftkit.plugin.registry import get_registry

    task = get_registry().tasks["lm/sft"]
    f = tmp_path / "train.jsonl"
    f.write_text(
        json.dumps({"instruction": "Q", "output": "A"}) + "\n" + json.dumps({"instruction": "Q", "output": None})
    )
    with pytest.raises(DataError, match=f"{f}:2: field 'output' is null, not a string"):
        task.load_split(task.params_model(train_file=str(f)), "train")
    # input and system may be null (nothing added), as before
    row = {"instruction": "Q", "input": None, "system": None, "output": "A"}
    assert to_messages(row, "f:1") == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


def test_the_common_shapes_read_the_same():
    alpaca = to_messages({"instruction": "Q", "input": "ctx", "output": "A"}, "f:1")
    openai = to_messages(
        {"messages": [{"role": "user", "content": "Q\n\nctx"}, {"role": "assistant", "content": "A"}]}, "f:2"
    )
    sharegpt = to_messages(
        {"conversations": [{"from": "human", "value": "Q\n\nctx"}, {"from": "gpt", "value": "A"}]}, "f:3"
    )
    assert alpaca == openai == sharegpt


@pytest.mark.skipif(
    not GEMMA, reason=f"no converted packaged:gemma-3-270m folder in {cache_root() / 'models'} (set PEFTKIT_CACHE)"
)
def test_a_template_that_does_not_render_names_the_row():
    """Gemma's template refuses two user turns in a row: a DataError naming the row, not a jinja traceback."""
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    with pytest.raises(DataError, match=r"row 0 \(id 7\).*does not render.*alternate"):
        _encode([ChatExample("a", id=7, messages=msgs)], _tok(GEMMA[0]))


def test_base_tokenizer_without_template_needs_a_named_one(tiny_llama):
    from transformers import AutoTokenizer

    msgs = [{"role": "user", "content": "good"}, {"role": "assistant", "content": "good"}]
    with pytest.raises(PeftkitError, match="no chat template.*chatml, alpaca"):
        _encode([ChatExample("x", messages=msgs)], AutoTokenizer.from_pretrained(str(tiny_llama)))


def test_long_prompts_are_counted_and_left_out_never_silently(tiny_llama, caplog):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    short = [{"role": "user", "content": "good"}, {"role": "assistant", "content": "good day"}]
    long = [{"role": "user", "content": " ".join(["the movie"] * 40)}, {"role": "assistant", "content": "bad"}]
    medium = [
        {"role": "user", "content": " ".join(["the"] * 10)},
        {"role": "assistant", "content": " ".join(["a"] * 30)},
    ]
    rows = [ChatExample("s", messages=short), ChatExample("l", messages=long), ChatExample("m", messages=medium)]
    with caplog.at_level(logging.WARNING, logger="peftkit"):
        enc = _encode(rows, tok, max_length=24, template="alpaca")
    assert len(enc) == 2 and enc.dropped == 1 and enc.truncated == 1
    assert "1 of 3 rows have a prompt of data.max_length=24 tokens or more" in caplog.text
    assert max(enc.lengths) == 24
    with pytest.raises(DataError, match="nothing is left"):
        _encode([rows[1]], tok, max_length=24, template="alpaca")


def test_truncated_sft_rows_are_counted_in_a_warning_that_names_the_fix(tiny_llama, tmp_path, caplog):
    """Rows whose answer runs past data.max_length lose its end (and the stop token): setup warns with the count
    and says to raise data.max_length, unless data.truncation_warning is off."""
    from peftkit.build.setup import prepare
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import validate

    rows = [{"instruction": "good", "output": "good"}] * 3 + [{"instruction": "bad", "output": "bad " * 40}] * 2
    files = {split: tmp_path / f"{split}.jsonl" for split in ("train", "dev")}
    for f in files.values():
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = sft_recipe(tiny_llama, files, tmp_path / "o")
    with caplog.at_level(logging.WARNING, logger="peftkit"):
        s = prepare(validate(recipe), get_registry(), ("train",))
    assert s.data["train"].truncated == 2
    warned = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert "train: 2 of 5 examples are longer than data.max_length=32 tokens" in warned[0].getMessage()
    assert "raise data.max_length" in warned[0].getMessage()
    caplog.clear()
    recipe["data"]["truncation_warning"] = False
    with caplog.at_level(logging.WARNING, logger="peftkit"):
        prepare(validate(recipe), get_registry(), ("train",))
    assert "truncated" not in caplog.text


def test_raw_text_is_packed_into_full_blocks(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    docs = [Example("the movie was good " * k) for k in (1, 3, 5, 2)]
    n_tokens = sum(4 * k + 1 for k in (1, 3, 5, 2))  # each document + EOS
    packed = _encode(docs, tok, max_length=16, pack=True)
    assert sum(packed.lengths) == n_tokens and all(n == 16 for n in packed.lengths[:-1])
    assert packed.labels == packed.input_ids
    assert sum(packed.input_ids, []).count(tok.eos_token_id) == 4  # documents joined by EOS, none lost
    single = _encode(docs, tok, max_length=16, pack=False)
    assert len(single) == 4 and single.truncated == 1  # 21 tokens > 16; 5, 13, 9 fit


def test_text_metrics_by_hand():
    assert tokens("我爱NLP, ok!") == ["我", "爱", "NLP", ",", "ok", "!"]
    # LCS of 今天天气很好 / 今天很好 is 4: P = 4/6, R = 4/4
    assert rouge_l("今天天气很好", "今天很好") == pytest.approx(2 * (4 / 6) * 1 / (4 / 6 + 1))
    assert corpus_bleu(["今天天气很好"], ["今天天气很好"]) == pytest.approx(1.0)
    assert corpus_bleu(["好"], ["今天天气很好"]) == 0.0
    m = generation_metrics(["三个工作日。", "不知道"], ["三个工作日。", "两天"])
    assert m["exact_match"] == 0.5 and m["rouge_l"] == pytest.approx(0.5)


def test_left_padded_batched_generation_equals_one_by_one(tiny_llama):
    """Greedy answers do not depend on the batch (left padding) and are the same on every call."""
    import torch
    from transformers import AutoModelForCausalLM

    from peftkit_plugins.causal_lm.generation import generate_ids

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama)).train()  # generation must restore this mode
    prompts = [[2, 12, 13, 4], [2, 5], [2, 9, 10, 11, 12, 13, 14]]
    kw = dict(pad_id=0, stop=[3], max_new_tokens=6, device="cpu")
    batched, _ = generate_ids(model, prompts, batch_size=3, **kw)
    again, _ = generate_ids(model, prompts, batch_size=3, **kw)
    alone = [generate_ids(model, [p], batch_size=1, **kw)[0][0] for p in prompts]
    assert batched == again == alone
    assert sum(map(len, batched)) > 0 and model.training


def _sft_files(tmp_path, n_train=48, n_dev=8):
    from peftkit.kit.tiny import sentiment_rows

    files = {}
    for split, n, seed in (("train", n_train, 0), ("dev", n_dev, 1)):
        rows = [
            {"instruction": r["text"], "output": "good" if r["label"] == "pos" else "bad"}
            for r in sentiment_rows(n, seed)
        ]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def sft_recipe(model_dir, files, out, method="lora", params=None, **train):
    return {
        "model": {"source": f"local:{model_dir}"},
        "method": {"name": method, "params": params or {}},
        "task": {
            "name": "lm/sft",
            "params": {
                "train_file": str(files["train"]),
                "dev_file": str(files["dev"]),
                "template": "alpaca",
                "generation": {"max_new_tokens": 3, "samples": 8},
            },
        },
        "data": {"max_length": 32},
        "train": {"epochs": 1, "batch_size": 8, "lr": 2e-2, "log_every": 2, "seed": 0, **train},
        "output_dir": str(out),
    }


@pytest.fixture(scope="module")
def sft_run(tiny_llama, tmp_path_factory):
    """A finished tiny lm/sft run (4 steps on the tiny Llama), shared by the tests that read or talk to one."""
    import peftkit
    from peftkit.recipe import validate

    root = tmp_path_factory.mktemp("sft")
    peftkit.run(validate(sft_recipe(tiny_llama, _sft_files(root), root / "run", max_steps=4)))
    return root / "run"


def test_sft_run_reports_generation_metrics_and_generate_streams(sft_run, tmp_path, capsys):
    """A tiny lm/sft run: loss, perplexity and generation metrics in metrics.json (from the reloaded model, equal
    to training's best); then `peftkit generate` answers from the run."""
    from peftkit.cli import main

    metrics = json.loads((sft_run / "metrics.json").read_text())
    final = metrics["final"]
    for key in ("eval_loss", "perplexity", "token_accuracy", "exact_match", "rouge_l", "bleu"):
        assert key in final and math.isfinite(final[key])
    assert final["perplexity"] == pytest.approx(math.exp(final["eval_loss"]))
    assert final["token_accuracy"] == pytest.approx(metrics["best"]["token_accuracy"])
    capsys.readouterr()
    assert main(["generate", str(sft_run), "--prompt", "the movie was good", "--max-new-tokens", "3"]) == 0
    streamed = capsys.readouterr().out
    prompts = tmp_path / "p.txt"
    prompts.write_text("the movie was good\n")
    assert main(["generate", str(sft_run), "--prompt-file", str(prompts), "--max-new-tokens", "3"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["prompt"] == "the movie was good" and row["output"].strip() == streamed.strip()


def test_chat_keeps_the_conversation_resets_and_ends(sft_run, capsys, monkeypatch):
    """`peftkit chat` driven through stdin: each line is a user turn answered with the run's template, the next
    turn's prompt carries the conversation so far, /reset starts over, blank lines are skipped, /exit ends (and so
    does end of input). A first turn answers what `generate --prompt` answers (both greedy)."""
    import io

    from peftkit.cli import main
    from peftkit_plugins.causal_lm.commands import Session

    seen = []
    real = Session.prompt_ids
    monkeypatch.setattr(
        Session, "prompt_ids", lambda self, messages: seen.append(list(messages)) or real(self, messages)
    )
    assert main(["generate", str(sft_run), "--prompt", "the movie was good", "--max-new-tokens", "3"]) == 0
    alone = capsys.readouterr().out.strip()
    seen.clear()
    lines = ["the movie was good", "bad", "", "/reset", "the movie was good", "/exit", "never read"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", str(sft_run), "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr()
    answers = [a.split("\n")[0].strip() for a in out.out.split("model> ")[1:]]
    assert alone and len(answers) == 3 and answers[0] == answers[2] == alone
    user = [{"role": "user", "content": "the movie was good"}]
    assert seen == [
        user,
        [*user, {"role": "assistant", "content": answers[0]}, {"role": "user", "content": "bad"}],
        user,
    ]
    assert "/reset starts over" in out.err
    monkeypatch.setattr("sys.stdin", io.StringIO("bad\n"))  # Ctrl-D after one turn
    assert main(["chat", str(sft_run), "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.count("model> ") == 1


def test_zeroshot_scores_the_untrained_base_and_trains_nothing(tiny_llama, tmp_path, capsys):
    """`peftkit zeroshot` on an lm/sft recipe: the base model's dev metrics (loss, perplexity, generation scores),
    printed and written with --output; no run folder is made."""
    import yaml

    from peftkit.cli import main

    recipe = sft_recipe(tiny_llama, _sft_files(tmp_path), tmp_path / "never")
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["zeroshot", str(path), "train.seed=1", "--output", str(tmp_path / "zs.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "zs.json").read_text())
    metrics = printed["zero_shot"]
    for key in ("eval_loss", "perplexity", "exact_match", "rouge_l"):
        assert math.isfinite(metrics[key]), key
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"])) and metrics["eval_loss"] > 1
    assert printed["samples"] == 8 and not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"prompt": "a"}', "", '{"prompt": "b",}'], r"p.jsonl:3: not valid JSON \(Expecting property name"),
        (['{"prompt": "a"}', '{"text": "b"}'], "p.jsonl:2 has no 'prompt' field holding a string"),
        (['{"prompt": null}'], "p.jsonl:1 has no 'prompt' field holding a string"),
    ],
)
def test_a_bad_prompt_file_is_a_clear_error_naming_file_and_line(tmp_path, capsys, lines, error):
    """Read before the run is loaded (the run folder here does not exist): one line on stderr, exit 2, no
    traceback."""
    import re

    from peftkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(lines) + "\n")
    assert main(["generate", str(tmp_path / "no-run"), "--prompt-file", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert re.search(error, err) and err.startswith(f"error: --prompt-file: {prompts}") and "Traceback" not in err


def test_objective_conformance_on_the_tiny_llama():
    from peftkit.kit.conformance import check_objective

    for name in ("causal-lm", "label-likelihood"):
        report = check_objective(name, models=("llama",))["llama"]
        assert math.isfinite(report.loss)
