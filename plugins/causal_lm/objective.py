"""The ``causal-lm`` objective: next-token prediction (``AutoModelForCausalLM``) on chat rows (loss on the
assistant's answers only) or raw text; dev loss, perplexity, next-token accuracy and, for chat rows, greedy
answers to the dev prompts scored with exact match, ROUGE-L and BLEU."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from peftkit import DataError, EncodeContext, Example, PeftkitError
from peftkit.kit import forward_batches, row_name
from peftkit_plugins.causal_lm.chat import segments, stop_ids, template_of, tokenize_segments
from peftkit_plugins.causal_lm.config import Generation, TemplateName
from peftkit_plugins.causal_lm.generation import generate_ids
from peftkit_plugins.causal_lm.textmetrics import generation_metrics

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("peftkit")
IGNORE = -100  # the label of a position without a target: cross-entropy skips it


class LmOptions(BaseModel):
    """What the objective reads from its task (``Task.objective_options``)."""

    model_config = ConfigDict(extra="ignore")

    template: TemplateName = "auto"
    pack: bool = True
    generation: Generation = Generation()


@dataclass
class LmSplit:
    """Token ids and labels per sequence; for chat rows also each row's prompt ids and reference answer."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    examples: list[Example]
    prompts: list[list[int]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0
    options: LmOptions = field(default_factory=LmOptions)
    tokenizer: Any = None
    stop: list[int] = field(default_factory=list)
    objective: Any = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def collate(self, idx: list[int], pad_id: int, *, epoch: int = 0, batch: int = 0) -> dict[str, Any]:
        """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding), plus
        ``logits_to_keep`` and ``shift_labels`` (see :func:`answer_positions`): the model runs its output layer
        only over the positions that predict a labelled token, not over the prompt and the padding."""
        import torch

        width = max(len(self.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            n = len(self.input_ids[i])
            ids[r, :n] = torch.as_tensor(self.input_ids[i])
            labels[r, :n] = torch.as_tensor(self.labels[i])
            mask[r, :n] = 1
        keep, shifted = answer_positions(labels)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "logits_to_keep": keep,
            "shift_labels": shifted,
        }


def answer_positions(labels: Any) -> tuple[Any, Any]:
    """Per row, the positions whose next token is labelled (``logits_to_keep``, a ``(rows, k)`` integer tensor that
    transformers' decoders slice their hidden states with before the output layer) and those next tokens
    (``shift_labels``, which the causal-LM loss takes in place of shifting ``labels`` itself). Rows with fewer than
    ``k`` such positions are filled with position 0 and label -100, which the loss skips. On chat rows the answer is
    a small share of the tokens, so the vocabulary-sized output layer, its softmax and their gradients shrink by
    that share."""
    import torch

    nxt = labels[:, 1:] != IGNORE
    k = max(int(nxt.sum(1).max()) if len(labels) else 0, 1)
    keep = torch.zeros((len(labels), k), dtype=torch.long)
    shifted = torch.full((len(labels), k), IGNORE, dtype=torch.long)
    for r in range(len(labels)):
        pos = nxt[r].nonzero().squeeze(1)
        keep[r, : len(pos)] = pos
        shifted[r, : len(pos)] = labels[r, pos + 1]
    return keep, shifted


class CausalLM:
    """Next-token prediction on a decoder: instruction / chat fine-tuning and continued pretraining."""

    name = "causal-lm"
    summary = "Next-token prediction on a decoder (AutoModelForCausalLM): chat/instruction SFT with answer-only loss, raw text."
    auto_class = "AutoModelForCausalLM"
    labelled = False
    decoder_only = True  # transformers loads BERT-like encoders as causal LMs too, attending both ways

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        if examples and not any(e.text.strip() or getattr(e, "messages", None) for e in examples):
            raise DataError(f"{where}: all {len(examples)} rows are empty; causal-LM training needs text")

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> LmSplit:
        """Chat rows (``messages``) through the chat template, answer tokens labelled; raw text packed or cut."""
        opts = LmOptions.model_validate(ctx.options)
        if not examples:
            raise DataError(f"the {ctx.split} split is empty: no rows were loaded; check the task's data files")
        if getattr(examples[0], "messages", None):
            split = _encode_chat(examples, tokenizer, ctx, opts)
        else:
            split = _encode_text(examples, tokenizer, ctx.max_length, opts.pack)
        split.options, split.tokenizer = opts, tokenizer
        return split

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        return {}

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """The output layer only when the checkpoint lacks it (a bare decoder saved without its LM head, as the
        tiny test models are): then it starts random and must train and be saved. A pretrained one (usually tied
        to the embeddings) is left alone. Refuses a model whose ``forward`` takes no ``logits_to_keep``, which
        every training batch carries (see :func:`answer_positions`)."""
        import inspect

        if "logits_to_keep" not in inspect.signature(model.forward).parameters:
            raise PeftkitError(
                f"model.source: {type(model).__name__}.forward() takes no logits_to_keep, which the causal-lm "
                "objective passes so that the output layer runs over the answers only; use a transformers decoder "
                "(Llama, Qwen2, Gemma and the other AutoModelForCausalLM classes of transformers 5 take it)"
            )
        return output_head(model, missing_keys)

    def score(self, outputs: Any, data: Any, task: Any) -> tuple[dict[str, float], np.ndarray]:
        """Loss, perplexity and next-token accuracy over the labelled tokens; predictions are the predicted ids of
        those tokens, in batch order."""
        import numpy as np
        import torch

        loss_sum, count, preds, refs = 0.0, 0, [], []
        for _, batch, logits in outputs:
            labels = batch["shift_labels"]  # logits[:, j] predicts shift_labels[:, j] (see answer_positions)
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
        metrics.update(eval_loss=loss, perplexity=math.exp(min(loss, 50.0)), target_tokens=float(count))
        return metrics, p

    def evaluate(
        self, model: Any, data: Any, task: Any, *, batch_size: int, pad_id: int, device: Any, precision: str = "no"
    ) -> tuple[dict[str, float], np.ndarray]:
        """:meth:`score` over the evaluation batches, plus greedy answers to the first ``generation.samples`` dev
        prompts: ``exact_match``, ``rouge_l``, ``bleu`` and ``generated_tokens_per_second``."""
        metrics, preds = self.score(forward_batches(model, data, batch_size, pad_id, device, precision), data, task)
        gen = data.options.generation
        n = len(data.prompts) if gen.samples is None else min(gen.samples, len(data.prompts))
        if n == 0:
            return metrics, preds
        answers, seconds = generate_ids(
            model, data.prompts[:n], pad_id=pad_id, stop=data.stop, max_new_tokens=gen.max_new_tokens,
            batch_size=gen.batch_size, device=device,
        )  # fmt: skip
        hyps = [data.tokenizer.decode(a, skip_special_tokens=True) for a in answers]
        metrics.update(generation_metrics(hyps, data.references[:n]))
        metrics["generated_tokens_per_second"] = sum(map(len, answers)) / max(seconds, 1e-9)
        return metrics, preds

    def chat(self, *, setup: Any, model: Any) -> Any:
        """What ``peftkit serve`` answers ``POST /v1/chat/completions`` with for a finished run of this objective
        (see :class:`~peftkit_plugins.causal_lm.serving.ServedChat`)."""
        from peftkit_plugins.causal_lm.serving import ServedChat

        return ServedChat(setup, model)

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Sentences of :func:`peftkit.kit.tiny.sentiment_rows` as raw text."""
        from peftkit.kit.tiny import sentiment_rows

        return [Example(r["text"], id=r["id"]) for r in sentiment_rows(n, seed)]


def output_head(model: Any, missing_keys: set[str]) -> list[str]:
    """``["lm_head"]`` (the output layer's module name) when its weight is among the keys the checkpoint lacked."""
    head = model.get_output_embeddings()
    name = next((n for n, m in model.named_modules() if m is head), None)
    if name and any(k == f"{name}.weight" or k.endswith(f".{name}.weight") for k in missing_keys):
        return [name]
    return []


def _encode_chat(examples: list[Example], tok: Any, ctx: EncodeContext, opts: LmOptions) -> LmSplit:
    """Chat rows through the template; turns after the last assistant turn teach nothing and are left out."""
    template = template_of(tok, opts.template)
    split = LmSplit([], [], [], stop=stop_ids(tok, template))
    for i, e in enumerate(examples):
        last = max(k for k, m in enumerate(e.messages) if m["role"] == "assistant")
        try:
            pieces = segments(tok, e.messages[: last + 1], template)
        except DataError as exc:
            raise DataError(f"{row_name(f'{ctx.split} split', i, e)}: {exc}") from None
        ids, answer, prompt_end = tokenize_segments(tok, pieces)
        if (answer.index(True) if True in answer else len(ids)) >= ctx.max_length:
            split.dropped += 1  # not one answer token fits: the row cannot teach anything
            continue
        split.truncated += len(ids) > ctx.max_length
        cut = ids[: ctx.max_length]
        split.input_ids.append(cut)
        split.labels.append([t if a else IGNORE for t, a in zip(cut, answer)])
        split.examples.append(e)
        split.prompts.append(ids[:prompt_end])
        split.references.append(e.messages[last]["content"].strip())
    _report_dropped(split, len(examples), ctx)
    return split


def _report_dropped(split: LmSplit, n: int, ctx: EncodeContext) -> None:
    if not split.dropped:
        return
    msg = (
        f"{ctx.split} split: {split.dropped} of {n} rows have a prompt of data.max_length={ctx.max_length} tokens "
        "or more, so no answer token fits; they are left out. Raise data.max_length or shorten those prompts"
    )
    if not split.input_ids:
        raise DataError(msg.replace("they are left out", "nothing is left"))
    log.warning(msg)


def _encode_text(examples: list[Example], tok: Any, max_length: int, pack: bool) -> LmSplit:
    """Documents + EOS; packed into full ``max_length`` blocks, or one truncated block per document."""
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    bos = [tok.bos_token_id] if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None else []
    docs = [e for e in examples if e.text.strip()]
    ids = [bos + list(x) + eos for x in tok([e.text for e in docs], add_special_tokens=False)["input_ids"]]
    split = LmSplit([], [], docs)
    if pack:
        stream = [t for x in ids for t in x]
        blocks = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
        blocks = [b for b in blocks if len(b) > 1]
    else:
        split.truncated = sum(len(x) > max_length for x in ids)
        blocks = [x[:max_length] for x in ids if len(x) > 1]
    split.input_ids, split.labels = blocks, [list(b) for b in blocks]
    return split
