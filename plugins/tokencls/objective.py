"""The ``token-classification`` objective: a label per character or word (``AutoModelForTokenClassification``)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peftkit import DataError, EncodeContext, Example, PeftkitError
from peftkit.kit import FAMILIES, classifier_heads, row_name
from peftkit_plugins.tokencls.align import IGNORE, RowAlignment, align_row, continuation, unit_predictions, unit_spans
from peftkit_plugins.tokencls.metrics import PAD

if TYPE_CHECKING:
    import numpy as np

MODES = ("first", "all")


@dataclass
class TokenSplit:
    """A tokenised split: token ids per row, their alignment to the row's units, the units' gold tags."""

    input_ids: list[list[int]]
    rows: list[RowAlignment]
    tags: list[list[int] | None]
    examples: list[Example]
    labels_names: list[str]
    cont: list[int]
    outside: int
    token_types: bool = False
    truncated: int = 0
    objective: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @property
    def labelled_count(self) -> int:
        """Rows with tags (test metrics need every row tagged)."""
        return sum(t is not None for t in self.tags)

    def collate(self, idx: list[int], pad_id: int, *, epoch: int = 0, batch: int = 0) -> dict[str, Any]:
        """Padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 where a token has no target)."""
        import numpy as np
        import torch

        lens = self.lengths[idx]
        keep = np.arange(int(lens.max())) < lens[:, None]
        ids = np.full(keep.shape, pad_id, dtype=np.int64)
        ids[keep] = np.concatenate([self.input_ids[i] for i in idx])
        labels = np.full(keep.shape, IGNORE, dtype=np.int64)
        labels[keep] = np.concatenate([self.rows[i].token_labels for i in idx])
        out = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(keep.astype(np.int64)),
            "labels": torch.from_numpy(labels),
        }
        if self.token_types:
            out["token_type_ids"] = torch.zeros_like(out["input_ids"])
        return out


class TokenClassification:
    """A label per unit of a row (a Chinese character, a word): named entities, part-of-speech tags."""

    name = "token-classification"
    summary = "A label per character or word (named entities): sub-word alignment, entity F1 with seqeval."
    auto_class = "AutoModelForTokenClassification"
    labelled = False  # a prediction is a tag sequence per row, not one label id

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        for i, e in enumerate(examples):
            _check_row(e, row_name(where, i, e), split, n_labels)

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> TokenSplit:
        """Tokenise each row's text with character offsets and align its units' tags to the tokens."""
        mode = ctx.options.get("subword_labels", "first")
        if mode not in MODES:
            raise PeftkitError(f"subword_labels: {mode!r} is not one of {', '.join(MODES)}")
        if not examples:
            raise DataError(f"the {ctx.split} split is empty: no rows were loaded; check the task's data files")
        if not getattr(tokenizer, "is_fast", False):
            raise PeftkitError(
                "model.source: token classification needs a fast tokenizer (character offsets map tags to tokens); "
                "this model's tokenizer is a slow one"
            )
        names = list(ctx.labels)
        cont = continuation(names)
        enc = tokenizer(
            [e.text for e in examples],
            truncation=True,
            max_length=ctx.max_length,
            return_offsets_mapping=True,
        )
        rows, truncated = [], 0
        for e, offsets in zip(examples, enc["offset_mapping"]):
            spans = unit_spans(e.text, e.tokens)
            row = align_row([tuple(o) for o in offsets], spans, e.tags, cont, mode)
            truncated += any(t < 0 for t in row.unit_token)
            rows.append(row)
        return TokenSplit(
            [list(x) for x in enc["input_ids"]],
            rows,
            [e.tags for e in examples],
            examples,
            names,
            cont,
            names.index("O") if "O" in names else 0,
            ctx.use_token_types,
            truncated,
        )

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """The token classifier (``classifier``, ``score`` on decoders): new, so it trains and is saved."""
        return classifier_heads(model, missing_keys)

    def score(self, outputs: Any, data: TokenSplit, task: Any) -> tuple[dict[str, float], np.ndarray]:
        """Per unit the predicted tag (:func:`~peftkit_plugins.tokencls.align.unit_predictions`); the task's
        metrics on tag names, ``token_accuracy`` per unit and ``eval_loss`` per labelled token, when every row is
        tagged. Predictions: the units' label ids, row after row in data order."""
        import numpy as np
        import torch

        per_row: list[list[int]] = [[] for _ in range(len(data))]
        loss_sum, count = 0.0, 0
        for idx, batch, logits in outputs:
            labels = batch["labels"]
            keep = labels != IGNORE
            if keep.any():
                loss_sum += torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
                count += int(keep.sum())
            preds = logits.argmax(-1).cpu().tolist()
            for j, i in enumerate(idx):
                n = len(data.input_ids[i])
                per_row[i] = unit_predictions(preds[j][:n], data.rows[i], data.cont, data.outside)
        flat = np.asarray([p for row in per_row for p in row], dtype=np.int64)
        if data.labelled_count < len(data):
            return {}, flat
        metrics = dict(task.compute_metrics(_named(per_row, data.labels_names), _named(data.tags, data.labels_names)))
        gold = np.asarray([t for row in data.tags for t in row], dtype=np.int64)
        metrics.setdefault("token_accuracy", float((flat == gold).mean()) if len(gold) else 0.0)
        metrics["eval_loss"] = loss_sum / max(count, 1)
        return {k: float(v) for k, v in metrics.items()}, flat

    def row_predictions(self, predictions: np.ndarray, data: TokenSplit) -> list[list[str]]:
        """The flat predictions of :meth:`score` cut back into rows: one tag name per unit."""
        out, pos = [], 0
        for e in data.examples:
            n = len(e.tokens)
            out.append([data.labels_names[int(p)] for p in predictions[pos : pos + n]])
            pos += n
        return out

    def load_problem(self, exc: Exception) -> str | None:
        """For an architecture without a token-classification head: transformers' first line and what to do."""
        text = str(exc)
        if "Unrecognized configuration class" not in text:
            return None
        from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES as HAVE

        known = [t for t in FAMILIES if t in HAVE]
        return (
            text.strip().splitlines()[0] + f" transformers has a token-classification head for {len(HAVE)} model "
            f"types, among them {', '.join(known)}: choose such a model.source for a token task"
        )

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Words of :func:`peftkit.kit.tiny.sentiment_rows`, each tagged 1 (``pos``) if it is a sentiment word."""
        from peftkit.kit.tiny import NEGATIVE, POSITIVE, sentiment_rows
        from peftkit_plugins.tokencls.rows import TokenExample

        rows = []
        for r in sentiment_rows(n, seed):
            words = r["text"].split()
            tags = [int(w in POSITIVE or w in NEGATIVE) for w in words]
            rows.append(TokenExample(r["text"], id=r["id"], tokens=words, tags=tags))
        return rows


def _named(rows: list[list[int]], names: list[str]) -> Any:
    """Rows of label ids as a 2-D array of tag names padded with ``PAD`` (what token tasks' metrics read)."""
    import numpy as np

    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), PAD, dtype=object)
    for i, r in enumerate(rows):
        out[i, : len(r)] = [names[t] for t in r]
    return out


def _check_row(e: Any, row: str, split: str, n_labels: int) -> None:
    """DataError naming the row: units missing, not strings, not in the text; tags of the wrong length or kind."""
    tokens, tags = getattr(e, "tokens", None), getattr(e, "tags", None)
    if not isinstance(tokens, (list, tuple)) or not tokens:
        raise DataError(
            f"{row}: a token-classification row needs tokens (a non-empty list of its characters or words), "
            f"got {tokens!r:.60}"
        )
    bad = next((i for i, t in enumerate(tokens) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise DataError(f"{row}: token {bad} is {tokens[bad]!r:.40}, not a non-blank string")
    if unit_spans(e.text, list(tokens)) is None:
        raise DataError(f"{row}: its tokens do not appear in order in its text {e.text!r:.60}")
    if tags is None:
        if split in ("train", "dev"):
            raise DataError(f"{row} has no tags: training and evaluation need a tag per token on every row")
        return
    if not isinstance(tags, (list, tuple)) or len(tags) != len(tokens):
        got = f"{len(tags)} tags" if isinstance(tags, (list, tuple)) else f"tags {tags!r:.40}"
        raise DataError(f"{row}: {len(tokens)} tokens but {got}; give exactly one tag per token")
    for i, t in enumerate(tags):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < n_labels:
            raise DataError(f"{row}: tag {i} is {t!r:.40}, not a label id from 0 to {n_labels - 1}")
