"""The ``masked-lm`` objective: texts packed (or truncated) into ``data.max_length`` blocks, tokens masked anew
in every training batch, dev blocks masked once (the same in every run), metrics on the masked tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from peftkit import DataError, EncodeContext, Example, PeftkitError
from peftkit_plugins.mlm.masking import IGNORE, generator, mask_tokens, pad, word_groups

if TYPE_CHECKING:
    import numpy as np

DEV_MASK_SEED = 0  # dev masks do not follow train.seed: every run (and seed) is scored on the same masked tokens
_SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}


class MaskingOptions(BaseModel):
    """What the ``masked-lm`` objective reads from its task (``Task.objective_options``)."""

    model_config = ConfigDict(extra="ignore")

    masking: Literal["token", "word"] = "token"
    mask_probability: float = Field(0.15, gt=0, lt=1)
    pack: bool = True


@dataclass
class MaskedLMSplit:
    """Blocks of token ids with their masking units; ``fixed`` holds a dev split's masked inputs and labels."""

    input_ids: list[list[int]]
    groups: list[list[int]]
    examples: list[Example]
    seed: int
    probability: float
    mask_id: int
    vocab_size: int
    token_types: bool = False
    truncated: int = 0
    fixed: tuple[list[list[int]], list[list[int]]] | None = None
    objective: Any = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def masked(self, idx: list[int], pad_id: int, epoch: int, batch: int) -> tuple[Any, Any]:
        """``(inputs, labels)`` tensors of rows ``idx``: drawn for (seed, epoch, batch) in training, fixed on dev."""
        import torch

        if self.fixed is not None:
            inputs, labels = self.fixed
            return (
                torch.from_numpy(pad([inputs[i] for i in idx], pad_id)),
                torch.from_numpy(pad([labels[i] for i in idx], IGNORE)),
            )
        ids = torch.from_numpy(pad([self.input_ids[i] for i in idx], pad_id))
        groups = torch.from_numpy(pad([self.groups[i] for i in idx], -1))
        g = generator(self.seed, epoch, batch, idx=idx)
        return mask_tokens(
            ids, groups, g, probability=self.probability, mask_id=self.mask_id, vocab_size=self.vocab_size
        )

    def collate(self, idx: list[int], pad_id: int, *, epoch: int = 0, batch: int = 0) -> dict[str, Any]:
        """Padded ``input_ids`` (masked), ``attention_mask`` and ``labels`` (-100 where nothing is predicted)."""
        import torch

        inputs, labels = self.masked(idx, pad_id, epoch, batch)
        lens = torch.as_tensor([len(self.input_ids[i]) for i in idx])
        out = {
            "input_ids": inputs,
            "attention_mask": (torch.arange(inputs.shape[1])[None, :] < lens[:, None]).long(),
            "labels": labels,
        }
        if self.token_types:
            out["token_type_ids"] = torch.zeros_like(inputs)
        return out


class MaskedLM:
    """Masked-language-model (continued) pretraining on raw text: ``AutoModelForMaskedLM``."""

    name = "masked-lm"
    summary = "Masked-language-model pretraining on raw text: 15% dynamic masking, by token or whole word."
    auto_class = "AutoModelForMaskedLM"
    labelled = False
    encoder_only = True
    float_modules = ("cls",)  # BERT's MLM head stays unquantized on a 4/8-bit base (it may train)

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        if examples and not any(e.text.strip() for e in examples):
            raise DataError(f"{where}: all {len(examples)} rows are empty; masked-LM training needs text")

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> MaskedLMSplit:
        """Tokenise, group tokens into masking units, pack or truncate into blocks; mask a dev split once."""
        opts = MaskingOptions.model_validate(ctx.options)
        if tokenizer.mask_token_id is None:
            raise PeftkitError("model.source: the tokenizer has no mask token, so it cannot train a masked LM")
        docs = [e.text for e in examples if e.text.strip()]
        if not docs:
            raise DataError(f"the {ctx.split} split is empty: no text was loaded; check the task's data files")
        ids, groups = _units(docs, tokenizer, opts.masking)
        blocks, truncated = _blocks(ids, groups, tokenizer, ctx.max_length, opts.pack)
        split = MaskedLMSplit(
            [b[0] for b in blocks],
            [b[1] for b in blocks],
            examples,
            ctx.seed,
            opts.mask_probability,
            int(tokenizer.mask_token_id),
            len(tokenizer),
            ctx.use_token_types,
            truncated,
        )
        if ctx.split != "train":
            split.fixed = _fixed_masks(split, int(tokenizer.pad_token_id), _SPLIT_CODES.get(ctx.split, 3))
        return split

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        return {}

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """The MLM head's transform when the checkpoint lacks it (an encoder saved without its pretraining head,
        such as multilingual-e5): it must train and be saved. The output projection is tied to the word
        embeddings, and its per-token bias stays as loaded: training either would copy a vocabulary-sized matrix."""
        modules = {}
        for key in missing_keys:
            module, _, param = key.rpartition(".")
            if not module or module.endswith("decoder") or _has_child(model, module, "decoder"):
                continue
            modules[module] = param
        return sorted(modules)

    def score(self, outputs: Any, data: Any, task: Any) -> tuple[dict[str, float], np.ndarray]:
        """Loss, perplexity and the task's metrics (masked-token accuracy) over the masked tokens; the predictions
        are the predicted ids of the masked tokens, in batch order."""
        import numpy as np
        import torch

        loss_sum, count, preds, refs = 0.0, 0, [], []
        for _, batch, logits in outputs:
            labels = batch["labels"]
            keep = labels != IGNORE
            picked, target = logits[keep], labels[keep]
            loss_sum += torch.nn.functional.cross_entropy(picked, target, reduction="sum").item()
            count += int(keep.sum())
            preds.append(picked.argmax(-1).cpu().numpy())
            refs.append(target.cpu().numpy())
        p = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
        r = np.concatenate(refs) if refs else np.zeros(0, dtype=np.int64)
        loss = loss_sum / max(count, 1)
        metrics = {k: float(v) for k, v in task.compute_metrics(p, r).items()}
        metrics.update(mlm_loss=loss, perplexity=math.exp(min(loss, 50.0)), masked_tokens=float(count), eval_loss=loss)
        return metrics, p

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Sentences of :func:`peftkit.kit.tiny.sentiment_rows` (the tiny models' vocabulary), unlabelled."""
        from peftkit.kit.tiny import sentiment_rows

        return [Example(r["text"], id=r["id"]) for r in sentiment_rows(n, seed)]


def _has_child(model: Any, module: str, child: str) -> bool:
    try:
        return hasattr(model.get_submodule(module), child)
    except AttributeError:
        return False


def _segmenter() -> Any:
    """jieba's word segmentation (imported on first use; its dictionary loads once per process, ~1 s)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return lambda text: list(jieba.cut(text))


def _units(docs: list[str], tokenizer: Any, masking: str) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids per document (no special tokens) and each token's masking unit (its word, or itself)."""
    if masking == "word" and not getattr(tokenizer, "is_fast", False):
        raise PeftkitError("task.params.masking: word needs a fast tokenizer (character offsets); use masking: token")
    enc = tokenizer(docs, add_special_tokens=False, return_offsets_mapping=masking == "word")
    ids = [list(x) for x in enc["input_ids"]]
    if masking == "token":
        return ids, [list(range(len(x))) for x in ids]
    segment = _segmenter()
    return ids, [word_groups(d, [tuple(o) for o in offs], segment) for d, offs in zip(docs, enc["offset_mapping"])]


def _frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence (``[CLS]`` / ``[SEP]`` for BERT,
    ``<s>`` / ``</s>`` for XLM-R), read off a probe: the same ids the tokenizer would add itself."""
    probe = "a"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    start = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), None)
    if not bare or start is None:
        raise PeftkitError("model.source: cannot tell where this tokenizer puts its special tokens around a text")
    return full[:start], full[start + len(bare) :]


def _blocks(
    ids: list[list[int]], groups: list[list[int]], tokenizer: Any, max_length: int, pack: bool
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """``([(block ids with special tokens, units with -1 on special tokens)], documents truncated)``.

    Packing joins the documents (a separator token between two) and cuts the stream into full blocks, so no
    position is wasted on padding; without it each document is one block, cut at ``max_length``."""
    import numpy as np

    before, after = _frame(tokenizer)
    room = max_length - len(before) - len(after)
    if room < 1:
        raise PeftkitError(f"data.max_length: {max_length} leaves no room for text between the special tokens")
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pieces: list[tuple[list[int], list[int]]] = []
    truncated = 0
    if pack:
        stream_ids, stream_units, offset = [], [], 0
        for doc_ids, doc_units in zip(ids, groups):
            if stream_ids and sep is not None:
                stream_ids.append(sep)
                stream_units.append(-1)
            stream_ids += doc_ids
            stream_units += [u + offset for u in doc_units]
            offset += max(doc_units, default=-1) + 1  # units of different documents never merge
        pieces = [(stream_ids[i : i + room], stream_units[i : i + room]) for i in range(0, len(stream_ids), room)]
    else:
        truncated = sum(len(x) > room for x in ids)
        pieces = [(x[:room], u[:room]) for x, u in zip(ids, groups) if x]
    out = []
    for chunk, units in pieces:
        if not chunk:
            continue
        arr = np.asarray(units, dtype=np.int64)
        valid = arr >= 0
        arr[valid] = np.unique(arr[valid], return_inverse=True)[1]  # units numbered from 0 within the block
        out.append((before + chunk + after, [-1] * len(before) + arr.tolist() + [-1] * len(after)))
    return out, truncated


def _fixed_masks(split: MaskedLMSplit, pad_id: int, code: int) -> tuple[list[list[int]], list[list[int]]]:
    """Mask a dev split once, row by row independent of batching: the same masked tokens for every evaluation."""
    import torch

    ids = torch.from_numpy(pad(split.input_ids, pad_id))
    groups = torch.from_numpy(pad(split.groups, -1))
    g = generator(DEV_MASK_SEED, code)
    inputs, labels = mask_tokens(
        ids, groups, g, probability=split.probability, mask_id=split.mask_id, vocab_size=split.vocab_size
    )
    lens = split.lengths
    return (
        [inputs[i, : lens[i]].tolist() for i in range(len(lens))],
        [labels[i, : lens[i]].tolist() for i in range(len(lens))],
    )
