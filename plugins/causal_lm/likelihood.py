"""The ``label-likelihood`` objective: a labelled task (CLUE, FewCLUE, your own classification data) on a decoder,
each label scored by the likelihood of its wording after the row's prompt (OpenCompass's PPL protocol).

Training teaches the decoder the gold label's wording (loss on those tokens only). Evaluation scores every
candidate (the label's verbalisation, or the row's own choices for a multiple-choice task) by the mean log
probability of its tokens given the prompt (``normalize: sum`` for the sum) and predicts the best one, so
predictions, metrics and submission files are the task's own. A recipe picks it with ``task.objective:
label-likelihood``; the task's ``objective_options`` may give ``verbalizers`` and a ``prompt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from peftkit import DataError, EncodeContext, Example, PeftkitError
from peftkit.kit import MULTIPLE_CHOICE, check_labels, row_name, scores
from peftkit_plugins.causal_lm.generation import generate_ids

if TYPE_CHECKING:
    import numpy as np

IGNORE = -100
DEFAULT_PROMPT = "{text}\n{text_pair}\n"  # the text (and its pair) then the answer on a line of its own


class LikelihoodOptions(BaseModel):
    """What the objective reads from the task (``Task.objective_options``)."""

    model_config = ConfigDict(extra="ignore")

    verbalizers: list[str] | dict[str, str] | None = None
    prompt: str = DEFAULT_PROMPT
    normalize: Literal["mean", "sum"] = "mean"
    generate: bool = False


@dataclass
class CandidateSplit:
    """Per row its candidates' sequences (train: the gold one only) with labels on the candidate's tokens."""

    input_ids: list[list[list[int]]]
    targets: list[list[list[int]]]
    labels: np.ndarray
    examples: list[Example]
    normalize: str = "mean"
    truncated: int = 0
    objective: Any = None
    prompts: list[list[int]] = field(default_factory=list)  # per row its prompt alone (``generate``, eval splits)
    words: list[str] | None = None  # the label wordings (None: rows bring their own choices)
    tokenizer: Any = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.asarray([max(len(s) for s in row) for row in self.input_ids], dtype=np.int64)

    @property
    def choices(self) -> int:
        return len(self.input_ids[0]) if self.input_ids else 0

    def collate(
        self, idx: list[int], pad_id: int, *, epoch: int = 0, batch: int = 0, left: bool = False
    ) -> dict[str, Any]:
        """The rows' sequences, flattened (row-major: ``len(idx) × candidates``), right-padded (``left``: left)."""
        import torch

        seqs = [s for i in idx for s in self.input_ids[i]]
        tgts = [t for i in idx for t in self.targets[i]]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, (s, t) in enumerate(zip(seqs, tgts)):
            at = slice(width - len(s), width) if left else slice(0, len(s))
            ids[r, at], labels[r, at], mask[r, at] = torch.as_tensor(s), torch.as_tensor(t), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def candidate_logprobs(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per sequence: the sum of the log probabilities of its labelled tokens (each predicted from the position
    before it) and how many there are. Only those positions are normalised, not the whole ``[seq, len, vocab]``."""
    import torch

    target = labels[:, 1:]
    keep = target != IGNORE
    logp = torch.log_softmax(logits[:, :-1][keep].float(), -1).gather(1, target[keep][:, None])[:, 0]
    rows = torch.arange(target.shape[0], device=target.device)[:, None].expand_as(target)[keep]
    total = torch.zeros(target.shape[0], device=logp.device).index_add_(0, rows, logp)
    return total, keep.sum(1)


def candidate_scores(outputs: Any, data: CandidateSplit) -> tuple[np.ndarray, np.ndarray]:
    """``[rows, candidates]`` arrays: each candidate's summed token log probability, and its token count."""
    import numpy as np

    n, c = len(data), data.choices
    total, count = np.zeros((n, c)), np.ones((n, c))
    for idx, batch, logits in outputs:
        s, k = candidate_logprobs(logits, batch["labels"])
        total[idx] = s.cpu().numpy().reshape(len(idx), c)
        count[idx] = np.maximum(k.cpu().numpy(), 1).reshape(len(idx), c)
    return total, count


class LabelLikelihood:
    """Classification on a decoder by the likelihood of each label's wording (``AutoModelForCausalLM``)."""

    name = "label-likelihood"
    summary = "A labelled task on a decoder: each label scored by the likelihood of its wording (OpenCompass PPL)."
    auto_class = "AutoModelForCausalLM"
    labelled = True
    decoder_only = True  # transformers loads BERT-like encoders as causal LMs too, attending both ways
    overrides = True

    def check_rows(self, examples: list[Example], where: str, split: str, n_labels: int) -> None:
        check_labels(examples, where, split, n_labels)

    def recipe_warnings(self, *, task: Any, params: Any) -> list[str]:
        """A task whose labels would be scored by their bare names when those are numbers (a label space of codes,
        such as IFLYTEK's "0" … "118", with no wordings): the likelihood of "17" says nothing about an app category,
        so the scores are close to chance. A task whose rows bring their own candidates (multiple choice) has none
        to word. A wording the run would refuse (wrong count, a duplicate) is said here too."""
        if (getattr(task, "objective", None) or getattr(task, "head", None)) == MULTIPLE_CHOICE:
            return []
        options = getattr(task, "objective_options", None)
        opts = LikelihoodOptions.model_validate(dict(options(params)) if options else {})
        try:
            words = verbalizations(opts.verbalizers, list(task.label_names(params)))
        except PeftkitError as exc:
            return [f"{task.name}: {exc} (a run stops here)"]
        bare = [w for w in words if w.strip().isdigit()]
        if not bare:
            return []
        shown = ", ".join(map(repr, bare[:3])) + (", ..." if len(bare) > 3 else "")
        return [
            f"{task.name}: label-likelihood scores each label by the likelihood of its wording, but {len(bare)} of "
            f"{len(words)} labels would be scored as bare numbers ({shown}), which tell a decoder nothing; give the "
            "task one wording per label (its verbalizers, such as the dataset's label descriptions)"
        ]

    def encode(self, examples: list[Example], tokenizer: Any, ctx: EncodeContext) -> CandidateSplit:
        """Prompt + candidate per (row, candidate); a training split keeps only the gold candidate."""
        import numpy as np

        opts = LikelihoodOptions.model_validate(ctx.options)
        if not examples:
            raise DataError(f"the {ctx.split} split is empty: no examples were loaded; check the task's data files")
        words = None if examples[0].choices is not None else verbalizations(opts.verbalizers, ctx.labels)
        split = CandidateSplit([], [], np.array([-1 if e.label is None else e.label for e in examples]), examples)
        split.normalize = opts.normalize
        generate = opts.generate and ctx.split != "train" and words is not None
        if generate:
            split.words, split.tokenizer = words, tokenizer
        for i, e in enumerate(examples):
            cands = list(e.choices) if e.choices is not None else words
            if ctx.split == "train":
                cands = [cands[e.label]]
            prompt = _prompt(opts.prompt, e, row_name(f"{ctx.split} split", i, e))
            seqs = [_sequence(tokenizer, prompt, c, ctx.max_length) for c in cands]
            if len({tuple(s) for s, _, _ in seqs}) < len(seqs) and ctx.split != "train":
                same = "choices" if e.choices is not None else "verbalizers"
                raise PeftkitError(
                    f"{row_name(f'{ctx.split} split', i, e)}: two candidates ({same} {cands}) become the same tokens "
                    "for this tokenizer (words it does not know?), so they cannot be told apart; give other wordings"
                )
            split.truncated += any(cut for _, _, cut in seqs)
            split.input_ids.append([s for s, _, _ in seqs])
            split.targets.append([t for _, t, _ in seqs])
            if generate:  # the prompt as the longest candidate left it (a truncated prompt is cut the most there)
                head = min(t.count(IGNORE) for _, t, _ in seqs)
                split.prompts.append(next(s[:head] for s, t, _ in seqs if t.count(IGNORE) == head))
        return split

    def model_kwargs(self, labels: list[str]) -> dict[str, Any]:
        return {}

    def head_modules(self, model: Any, missing_keys: set[str]) -> list[str]:
        """The output layer only when the checkpoint lacks it (see the causal-lm objective)."""
        from peftkit_plugins.causal_lm.objective import output_head

        return output_head(model, missing_keys)

    def score(self, outputs: Any, data: Any, task: Any) -> tuple[dict[str, float], np.ndarray]:
        """Best candidate per row; the task's metrics and ``eval_loss`` (mean loss per token of the gold wording)."""
        import numpy as np

        n = len(data)
        total, count = candidate_scores(outputs, data)
        value = total / count if data.normalize == "mean" else total
        preds = value.argmax(-1)
        if not (data.labels >= 0).all():
            return {}, preds
        gold = np.arange(n), data.labels
        loss = float(-(total[gold]).sum() / count[gold].sum())
        return scores(task, preds, data.labels, loss), preds

    def evaluate(
        self, model: Any, data: Any, task: Any, *, batch_size: int, pad_id: int, device: Any, precision: str = "no"
    ) -> tuple[dict[str, float], np.ndarray]:
        """:meth:`score` with ``batch_size`` counted in sequences (a row brings all its candidates), over
        left-padded batches whose output layer runs only on the positions that predict a candidate token: with
        Gemma's 262k-token vocabulary that layer is most of the cost of a full-sequence forward."""
        rows = max(1, batch_size // max(data.choices, 1))
        metrics, preds = self.score(_tail_batches(model, data, rows, pad_id, device, precision), data, task)
        if data.prompts and metrics:
            metrics.update(generated_answers(model, data, batch_size=rows, pad_id=pad_id, device=device))
        return metrics, preds

    def sample_examples(self, n: int, seed: int) -> list[Example]:
        """Sentiment rows whose choices are the words "bad" and "good" (the label: the right word's position)."""
        from peftkit.kit.tiny import sentiment_rows

        return [
            Example(r["text"], label=int(r["label"] == "pos"), id=r["id"], choices=["bad", "good"])
            for r in sentiment_rows(n, seed)
        ]


def _tail_batches(model: Any, data: CandidateSplit, rows: int, pad_id: int, device: Any, precision: str) -> Any:
    """``(row indices, batch, logits)`` like :func:`peftkit.kit.forward_batches`, but left-padded (position ids
    counted from each sequence's first real token, so scores equal the unpadded ones) and with logits only for
    the last positions, enough to cover every candidate (``logits_to_keep``)."""
    import contextlib

    import numpy as np
    import torch

    m = getattr(model, "module", model)
    was_training = m.training
    m.eval()
    cast = (
        torch.autocast(torch.device(device).type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])
        if precision != "no"
        else contextlib.nullcontext()
    )
    order = np.argsort(-data.lengths, kind="stable")
    try:
        with torch.inference_mode(), cast:
            for j in range(0, len(order), rows):
                idx = order[j : j + rows].tolist()
                batch = {k: v.to(device) for k, v in data.collate(idx, pad_id, left=True).items()}
                keep = int((batch["labels"] != IGNORE).sum(1).max()) + 1
                pos = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
                out = m(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=pos,
                    logits_to_keep=keep,
                )  # fmt: skip
                yield idx, {"labels": batch["labels"][:, -keep:]}, out.logits.float()
    finally:
        m.train(was_training)


def generated_answers(model: Any, data: CandidateSplit, *, batch_size: int, pad_id: int, device: Any) -> dict:
    """OpenCompass's gen protocol beside its PPL one: each dev prompt answered greedily with as many tokens as the
    longest wording has. The answer is the wording the text starts with (the longest, after stripping spaces; the
    objective never teaches the model to stop after a wording, so what follows it is not judged). ``exact_match``:
    the share of rows answered with the gold wording; ``answer_invalid``: the share that starts with no wording."""
    tok = data.tokenizer
    steps = max(len(tok(w, add_special_tokens=False)["input_ids"]) for w in data.words)
    stop = [tok.eos_token_id] if tok.eos_token_id is not None else []
    answers, seconds = generate_ids(
        model, data.prompts, pad_id=pad_id, stop=stop, max_new_tokens=steps, batch_size=batch_size, device=device
    )
    picked = [answer_label(tok.decode(a, skip_special_tokens=True), data.words) for a in answers]
    n = max(len(picked), 1)
    return {
        "exact_match": sum(p == g for p, g in zip(picked, data.labels.tolist())) / n,
        "answer_invalid": sum(p < 0 for p in picked) / n,
        "generated_tokens_per_second": sum(map(len, answers)) / max(seconds, 1e-9),
    }


def answer_label(text: str, words: list[str]) -> int:
    """The index of the longest wording ``text`` starts with (spaces at both ends ignored), or -1."""
    text = text.strip()
    best, size = -1, 0
    for k, w in enumerate(words):
        w = w.strip()
        if w and text.startswith(w) and len(w) > size:
            best, size = k, len(w)
    return best


def verbalizations(given: list[str] | dict[str, str] | None, labels: list[str]) -> list[str]:
    """One wording per label, in label-id order: ``given`` as a list, or a mapping from label name to wording
    (labels it leaves out keep their name), or the label names themselves."""
    if given is None:
        out = list(labels)
    elif isinstance(given, dict):
        unknown = [k for k in given if k not in labels]
        if unknown:
            raise PeftkitError(f"verbalizers: {unknown[0]!r} is not a label of this task ({', '.join(labels)})")
        out = [given.get(name, name) for name in labels]
    else:
        out = list(given)
    if len(out) != len(labels) or not labels:
        raise PeftkitError(
            f"verbalizers: {len(out)} wordings for {len(labels)} labels ({', '.join(labels)}); give one per label"
        )
    if len(set(out)) != len(out):
        raise PeftkitError(f"verbalizers: two labels have the same wording ({out}); each needs its own")
    return out


def _prompt(template: str, e: Example, where: str) -> str:
    try:
        text = template.format(text=e.text, text_pair=e.text_pair or "")
    except (KeyError, IndexError, ValueError) as exc:
        raise PeftkitError(
            f"prompt: {template!r} does not format ({exc}); it may only use {{text}} and {{text_pair}}"
        ) from None
    return text.replace("\n\n", "\n") if e.text_pair is None else text


def _sequence(tok: Any, prompt: str, candidate: str, max_length: int) -> tuple[list[int], list[int], bool]:
    """``(ids, targets, truncated?)``: the prompt (with the tokenizer's special tokens, BOS for Gemma/Llama, never
    an EOS) then the candidate; a prompt too long loses tokens from its middle so its start and its question stay."""
    head = list(tok(prompt)["input_ids"]) if prompt else []
    if head and head[-1] == tok.eos_token_id and tok.eos_token_id != tok.bos_token_id:
        head = head[:-1]
    if not head and tok.bos_token_id is not None:
        head = [tok.bos_token_id]  # the first candidate token needs a position to be predicted from
    cand = list(tok(candidate, add_special_tokens=False)["input_ids"])
    room = max_length - len(cand)
    if room < 1:
        raise PeftkitError(f"data.max_length: {max_length} leaves no room for the prompt before {candidate!r}")
    cut = len(head) > room
    if cut:
        keep_end = room // 2
        head = head[: room - keep_end] + head[len(head) - keep_end :]
    return head + cand, [IGNORE] * len(head) + cand, cut
