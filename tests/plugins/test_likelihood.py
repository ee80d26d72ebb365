"""The label-likelihood objective: scores equal a hand computation on the tiny Llama; a classification task runs
on a decoder through ``task.objective`` with the same predictions file as on an encoder; CLUE's wordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peftkit import EncodeContext, Example, PeftkitError
from peftkit_plugins.causal_lm.likelihood import LabelLikelihood, candidate_scores, verbalizations

ROWS = [
    Example("the movie was good", label=1, id="a"),
    Example("a bad day", label=0, id="b"),
    Example("very sad", label=0, id="c"),
    Example("the food is nice", label=1, id="d"),
]
WORDS = ["very bad", "good"]  # different lengths: mean and sum normalisation differ


def _model(tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(tiny_llama)), AutoTokenizer.from_pretrained(str(tiny_llama))


def _by_hand(model, tok, text, word):
    """Sum of log p(word's tokens | the text), one unpadded sequence at a time."""
    import torch

    head = tok(text)["input_ids"]
    cand = tok(word, add_special_tokens=False)["input_ids"]
    ids = torch.as_tensor([head + cand])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return sum(float(logp[len(head) + j - 1, t]) for j, t in enumerate(cand)), len(cand)


@pytest.mark.parametrize("normalize", ["mean", "sum"])
def test_scores_equal_a_hand_computation(tiny_llama, normalize):
    from peftkit.kit import forward_batches

    model, tok = _model(tiny_llama)
    o = LabelLikelihood()
    ctx = EncodeContext(
        max_length=32, split="dev", labels=["neg", "pos"], options={"verbalizers": WORDS, "normalize": normalize}
    )
    data = o.encode(ROWS, tok, ctx)
    data.objective = o
    total, count = candidate_scores(forward_batches(model, data, 3, 0, "cpu"), data)
    hand = np.array([[_by_hand(model, tok, e.text + "\n", w)[0] for w in WORDS] for e in ROWS])
    n_tok = np.array([[_by_hand(model, tok, e.text + "\n", w)[1] for w in WORDS] for e in ROWS])
    np.testing.assert_allclose(total, hand, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(count, n_tok)

    class Acc:
        def compute_metrics(self, p, r):
            return {"accuracy": float((p == r).mean())}

    metrics, preds = o.evaluate(model, data, Acc(), batch_size=4, pad_id=0, device="cpu")
    value = hand / n_tok if normalize == "mean" else hand
    np.testing.assert_array_equal(preds, value.argmax(-1))
    gold = hand[np.arange(4), [e.label for e in ROWS]]
    gold_tokens = n_tok[np.arange(4), [e.label for e in ROWS]]
    assert metrics["eval_loss"] == pytest.approx(-gold.sum() / gold_tokens.sum(), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float((preds == [1, 0, 0, 1]).mean()))


def test_training_rows_teach_the_gold_wording_only(tiny_llama):
    _, tok = _model(tiny_llama)
    data = LabelLikelihood().encode(
        ROWS, tok, EncodeContext(32, split="train", labels=["neg", "pos"], options={"verbalizers": WORDS})
    )
    batch = data.collate([0, 1], 0)
    assert batch["input_ids"].shape[0] == 2  # one sequence a row
    taught = [tok.decode([t for t in row.tolist() if t != -100]) for row in batch["labels"]]
    assert taught == ["good", "very bad"]


def test_verbalizations():
    assert verbalizations(None, ["a", "b"]) == ["a", "b"]
    assert verbalizations({"b": "好"}, ["a", "b"]) == ["a", "好"]
    with pytest.raises(PeftkitError, match="'c' is not a label"):
        verbalizations({"c": "x"}, ["a", "b"])
    with pytest.raises(PeftkitError, match="1 wordings for 2 labels"):
        verbalizations(["x"], ["a", "b"])
    with pytest.raises(PeftkitError, match="same wording"):
        verbalizations(["x", "x"], ["a", "b"])


def test_wordings_the_tokenizer_cannot_tell_apart_are_an_error(tiny_llama):
    _, tok = _model(tiny_llama)
    ctx = EncodeContext(32, split="dev", labels=["neg", "pos"], options={"verbalizers": ["负面", "正面"]})
    with pytest.raises(PeftkitError, match=r"row 0 \(id 'a'\).*become the same tokens"):
        LabelLikelihood().encode(ROWS, tok, ctx)


def test_clue_tasks_ship_wordings_that_the_recipe_overrides():
    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    tnews, ocnli = reg.tasks["clue/tnews"], reg.tasks["clue/ocnli"]
    opts = tnews.objective_options(tnews.params_model())
    assert opts["verbalizers"][:3] == ["故事", "文化", "娱乐"] and len(opts["verbalizers"]) == 15
    assert ocnli.objective_options(ocnli.params_model())["verbalizers"] == ["中立", "蕴含", "矛盾"]
    eprstmt = reg.tasks["fewclue/eprstmt"]
    given = eprstmt.params_model(verbalizers={"Positive": "好评"}, prompt="{text} 这是")
    assert eprstmt.objective_options(given) == {
        "prompt": "{text} 这是", "verbalizers": {"Positive": "好评"}, "generate": False,
    }  # fmt: skip


def _greedy(model, tok, text, steps):
    """Greedy tokens after ``text``, one unpadded sequence and one argmax at a time."""
    import torch

    ids = tok(text)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(steps):
            t = int(model(input_ids=torch.as_tensor([ids + out])).logits[0, -1].argmax())
            if t == tok.eos_token_id:
                break
            out.append(t)
    return tok.decode(out, skip_special_tokens=True)


def test_generated_answers_equal_greedy_decoding_by_hand(tiny_llama):
    from peftkit_plugins.causal_lm.likelihood import answer_label

    model, tok = _model(tiny_llama)
    o = LabelLikelihood()
    # the untrained model answers noise; the wordings are two rows' own one-token answers, so those rows answer
    # their gold wording and the others (another answer, or an empty one) answer none
    first = [_greedy(model, tok, e.text + "\n", 1).strip() for e in ROWS]
    answered = [i for i, t in enumerate(first) if t]
    if len(set(first[i] for i in answered)) < 2:
        pytest.skip("the tiny model gives fewer than two distinct answers")
    i, j = answered[0], next(k for k in answered if first[k] != first[answered[0]])
    rows = [Example(e.text, label=int(k == j), id=e.id) for k, e in enumerate(ROWS)]
    words = [first[i], first[j]]
    ctx = EncodeContext(32, split="dev", labels=["neg", "pos"], options={"verbalizers": words, "generate": True})
    data = o.encode(rows, tok, ctx)
    assert [tok.decode(p) for p in data.prompts] == [tok.decode(tok(e.text + "\n")["input_ids"]) for e in rows]

    class Acc:
        def compute_metrics(self, p, r):
            return {"accuracy": float((p == r).mean())}

    metrics, _ = o.evaluate(model, data, Acc(), batch_size=4, pad_id=0, device="cpu")
    steps = max(len(tok(w, add_special_tokens=False)["input_ids"]) for w in words)
    hand = [answer_label(_greedy(model, tok, e.text + "\n", steps), words) for e in rows]
    assert hand[i] == 0 and hand[j] == 1
    assert metrics["exact_match"] == pytest.approx(np.mean([h == e.label for h, e in zip(hand, rows)]))
    assert metrics["answer_invalid"] == pytest.approx(np.mean([h < 0 for h in hand]))
    plain = EncodeContext(32, split="dev", labels=["neg", "pos"], options={"verbalizers": words})
    assert (
        "exact_match"
        not in o.evaluate(model, o.encode(rows, tok, plain), Acc(), batch_size=4, pad_id=0, device="cpu")[0]
    )
    train = o.encode(rows, tok, EncodeContext(32, split="train", labels=["neg", "pos"], options=ctx.options))
    assert train.prompts == []  # training rows are never answered


def test_answer_label_takes_the_longest_wording_the_answer_starts_with():
    from peftkit_plugins.causal_lm.likelihood import answer_label

    words = ["负面", "正面", "正面评价"]
    assert answer_label(" 正面评价。", words) == 2
    assert answer_label("正面的", words) == 1
    assert answer_label("负", words) == -1
    assert answer_label("这条评论", words) == -1


def _files(tmp_path):
    from peftkit.kit.tiny import sentiment_rows

    files = {}
    for split, n, seed in (("train", 48, 0), ("dev", 16, 1), ("test", 8, 2)):
        rows = [
            {"id": r["id"], "text": r["text"], "label": "good" if r["label"] == "pos" else "bad"}
            for r in sentiment_rows(n, seed)
        ]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def _recipe(model, files, out, objective=None):
    task = {
        "name": "text-classification",
        "params": {
            "train_file": str(files["train"]),
            "dev_file": str(files["dev"]),
            "test_file": str(files["test"]),
            "labels": ["bad", "good"],
            "id_field": "id",
        },
    }
    if objective:
        task["objective"] = objective
    return {
        "model": {"source": f"local:{model}"},
        "method": {"name": "lora"},
        "task": task,
        "data": {"max_length": 32},
        "train": {"max_steps": 6, "batch_size": 8, "lr": 2e-2, "seed": 0},
        "eval": {"predict": True},
        "output_dir": str(out),
    }


def test_a_classification_task_on_a_decoder_by_likelihood(tiny_llama, tiny_bert, tmp_path):
    """text-classification with task.objective: label-likelihood on the tiny Llama: accuracy from the reloaded
    model equals training's, and the predictions file has the encoder run's name, rows and fields."""
    import peftkit
    from peftkit.recipe import validate

    files = _files(tmp_path)
    peftkit.run(validate(_recipe(tiny_llama, files, tmp_path / "dec", "label-likelihood")))
    peftkit.run(validate(_recipe(tiny_bert, files, tmp_path / "enc")))
    metrics = json.loads((tmp_path / "dec" / "metrics.json").read_text())
    assert metrics["final"]["accuracy"] == pytest.approx(metrics["best"]["accuracy"])
    assert "eval_loss" in metrics["final"]
    dec = sorted((tmp_path / "dec").glob("*predict*"))
    enc = sorted((tmp_path / "enc").glob("*predict*"))
    assert [p.name for p in dec] == [p.name for p in enc] and dec
    rows_d = [json.loads(x) for x in dec[0].read_text().splitlines()]
    rows_e = [json.loads(x) for x in enc[0].read_text().splitlines()]
    assert [r["id"] for r in rows_d] == [r["id"] for r in rows_e] and len(rows_d) == 8
    assert {tuple(sorted(r)) for r in rows_d} == {tuple(sorted(r)) for r in rows_e}
    assert {r["label"] for r in rows_d} <= {"bad", "good"}


def test_generate_on_a_likelihood_run_sends_plain_prompts_and_chat_refuses(tiny_llama, tmp_path, capsys, monkeypatch):
    """A label-likelihood run learnt plain prompts: `generate` sends them as written (the same answer as --raw, said
    on stderr) and not through the chat template; `chat`, which keeps a conversation in the template, refuses."""
    import peftkit
    from peftkit.cli import build_parser, main
    from peftkit.recipe import validate
    from peftkit_plugins.causal_lm.commands import Session

    run = tmp_path / "dec"
    peftkit.run(validate(_recipe(tiny_llama, _files(tmp_path), run, "label-likelihood")))
    capsys.readouterr()
    answers = {}
    for flags in ([], ["--raw"]):
        assert main(["generate", str(run), *flags, "--prompt", "the movie was good", "--max-new-tokens", "3"]) == 0
        out = capsys.readouterr()
        answers[tuple(flags)] = out.out
        assert ("trained on plain prompts" in out.err) == (not flags)
    assert answers[()] == answers[("--raw",)] and answers[()].strip()
    args = build_parser().parse_args(["generate", str(run), "--prompt", "x"])
    s = Session(str(run), args)
    rendered = s.prompt_ids([{"role": "user", "content": "the movie was good"}])
    assert rendered == s.tok("the movie was good")["input_ids"]  # BOS + the text, as the run was trained
    assert main(["generate", str(run), "--system", "be brief", "--prompt", "x"]) == 2
    assert "--system puts a system turn into the chat template" in capsys.readouterr().err
    monkeypatch.setattr("builtins.input", lambda _: "/exit")
    assert main(["chat", str(run)]) == 2
    assert "there is no conversation to keep in a chat template" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("objective", "error"),
    [("causal-lm", "cannot stand in.*use one of: label-likelihood"), ("nope", "'nope' cannot stand in")],
)
def test_task_objective_must_be_able_to_stand_in(tiny_llama, tmp_path, objective, error):
    from peftkit import RecipeError
    from peftkit.recipe import validate

    with pytest.raises(RecipeError, match=error):
        validate(_recipe(tiny_llama, _files(tmp_path), tmp_path / "o", objective))


def test_a_method_is_checked_against_the_objective_task_objective_names(tiny_llama, tmp_path, monkeypatch):
    """fewclue/eprstmt's own objective is sequence classification; with task.objective: label-likelihood the run
    trains that instead. A method that trains classification heads only (prefix, as it was before it learned
    decoders) is fine on the first and refused on the second by validate, saying why."""
    from peftkit import RecipeError
    from peftkit.kit import SEQUENCE_CLASSIFICATION
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import validate

    prefix = type(get_registry().methods["prefix"])
    monkeypatch.setattr(prefix, "task_heads", frozenset({SEQUENCE_CLASSIFICATION}))
    monkeypatch.setattr(prefix, "task_heads_note", {"label-likelihood": "its forward is built for a classifier"})
    recipe = {
        "model": {"source": f"local:{tiny_llama}"},
        "method": {"name": "prefix"},
        "task": {"name": "fewclue/eprstmt", "params": {"data_dir": str(tmp_path)}},
        "output_dir": str(tmp_path / "o"),
    }
    validate(recipe)  # on its own objective prefix is fine
    recipe["task"]["objective"] = "label-likelihood"
    with pytest.raises(RecipeError) as info:
        validate(recipe)
    text = str(info.value)
    assert "method 'prefix' cannot train task 'fewclue/eprstmt' with task.objective 'label-likelihood'" in text
    assert "prefix trains only sequence-classification (its forward is built for a classifier)" in text
    assert "Use one of: adalora, adapters, bitfit, full, ia3, lora" in text
    recipe["method"]["name"] = "lora"
    validate(recipe)


def test_every_clue_task_has_label_wordings_iflytek_its_own_label_des():
    """No CLUE/FewCLUE task is scored by bare label codes: each has wordings (or Chinese label names, or rows
    with their own candidates); IFLYTEK's are the label_des its data files carry for each label id."""
    import os
    from pathlib import Path

    from peftkit.plugin.registry import get_registry

    reg = get_registry()
    clue = [t for name, t in reg.tasks.items() if name.startswith(("clue/", "fewclue/"))]
    assert len(clue) == 16
    for task in clue:
        assert LabelLikelihood().recipe_warnings(task=task, params=task.params_model()) == [], task.name
    iflytek = reg.tasks["fewclue/iflytek"]
    words = iflytek.objective_options(iflytek.params_model())["verbalizers"]
    assert reg.tasks["clue/iflytek"].objective_options(iflytek.params_model())["verbalizers"] == words
    assert len(set(words)) == 119 and (words[0], words[23], words[118]) == ("打车", "MOBA", "其他")
    folder = Path(os.environ.get("PEFTKIT_CLUE_DIR") or Path(__file__).parents[2] / ".." / "shared/data/clue")
    files = sorted((folder / "fewclue" / "iflytek").glob("*.json"))
    if not files:
        pytest.skip(f"no FewCLUE iflytek files under {folder} to compare the wordings with")
    seen = {}
    for f in files:
        for line in f.read_text(encoding="utf-8").split("\n"):  # not splitlines: rows hold U+2028
            row = json.loads(line) if line.strip() else {}
            if "label_des" in row:
                seen[int(row["label"])] = row["label_des"]
    assert seen == dict(enumerate(words))


def test_labels_scored_as_bare_numbers_are_a_validate_warning(tiny_llama, tmp_path, capsys, caplog):
    """A labelled task whose label names are numbers and that gives no wordings still validates and runs, but
    `peftkit validate` (and the run's setup) warn that the decoder would score the digits themselves."""
    import logging

    import yaml

    from peftkit.build.setup import prepare
    from peftkit.cli import main
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import objective_warnings, validate

    files = _files(tmp_path)
    for f in files.values():  # labels "0" (bad) and "1" (good)
        f.write_text(f.read_text().replace('"label": "bad"', '"label": "0"').replace('"label": "good"', '"label": "1"'))
    recipe = _recipe(tiny_llama, files, tmp_path / "o", "label-likelihood")
    recipe["task"]["params"]["labels"] = ["0", "1"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: text-classification: label-likelihood scores each label by the likelihood of its wording" in err
    assert "2 of 2 labels would be scored as bare numbers ('0', '1')" in err and "verbalizers" in err
    with caplog.at_level(logging.WARNING, logger="peftkit"):
        prepare(validate(recipe), get_registry(), ())  # (the tiny tokenizer cannot read digits: no split)
    assert "would be scored as bare numbers" in caplog.text
    # words as labels, or the task's own objective (a classification head has no wordings): nothing to say
    assert objective_warnings(validate(_recipe(tiny_llama, _files(tmp_path), tmp_path / "o", "label-likelihood"))) == []
    recipe["task"].pop("objective")
    assert objective_warnings(validate(recipe)) == []


def test_an_encoder_is_refused_for_a_decoder_objective_before_and_at_loading(tiny_llama, tiny_bert, tmp_path):
    """label-likelihood (and causal-lm) on a BERT folder: transformers would load it as a causal LM attending both
    ways. validate refuses it from the folder's config.json, and so does loading (a hub model first downloaded at
    run time); the tiny Llama passes both."""
    from peftkit import RecipeError
    from peftkit.build.model import load_model
    from peftkit.recipe import ModelConfig, validate

    files = _files(tmp_path)
    with pytest.raises(RecipeError) as info:
        validate(_recipe(tiny_bert, files, tmp_path / "o", "label-likelihood"))
    assert (
        "model.source: task 'text-classification' trains the label-likelihood objective, which needs a decoder"
    ) in str(info.value)
    assert "this is a bert encoder" in str(info.value) and "or remove task.objective" in str(info.value)
    validate(_recipe(tiny_llama, files, tmp_path / "o", "label-likelihood"))
    validate(_recipe(tiny_bert, files, tmp_path / "o"))  # its own head on the encoder

    with pytest.raises(
        PeftkitError, match="model.source: this run trains the causal-lm objective, which needs a decoder"
    ):
        load_model(tiny_bert, ModelConfig(source=str(tiny_bert)), [], None, head="causal-lm")
    model, _ = load_model(tiny_llama, ModelConfig(source=str(tiny_llama)), [], None, head="causal-lm")
    assert model.can_generate()


def test_a_hub_model_already_in_the_cache_is_checked_by_validate(tiny_bert, tmp_path, monkeypatch):
    """hub:org/name whose config.json is in the HF cache: validate reads its model_type there (no network)."""
    import shutil

    from peftkit import RecipeError
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import validate

    snapshot = tmp_path / "hf" / "models--acme--bert-tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_bert / "config.json", snapshot / "config.json")
    (tmp_path / "hf" / "models--acme--bert-tiny" / "refs").mkdir()
    (tmp_path / "hf" / "models--acme--bert-tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub = get_registry().sources["hub"]
    assert hub.model_type("acme/bert-tiny") == "bert" and hub.model_type("acme/not-cached") is None
    recipe = {
        **_recipe(tiny_bert, _files(tmp_path), tmp_path / "o", "label-likelihood"),
        "model": {"source": "hub:acme/bert-tiny"},
    }
    with pytest.raises(RecipeError, match="this is a bert encoder"):
        validate(recipe)
    validate({**recipe, "model": {"source": "hub:acme/not-cached"}})  # unknown until downloaded: the run checks
