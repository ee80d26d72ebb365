"""``task.params`` of the ``lm/sft`` and ``lm/text`` tasks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from peftkit_plugins.causal_lm.chat import TEMPLATES

TemplateName = Literal[("auto", *TEMPLATES)]  # type: ignore[valid-type]


class Generation(BaseModel):
    """How dev prompts are answered for the generation metrics (greedy decoding)."""

    model_config = ConfigDict(extra="forbid")

    samples: int | None = Field(
        64, ge=0, description="Dev rows answered by generation at each evaluation (the first N); 0 = none, null = all."
    )
    max_new_tokens: int = Field(64, gt=0, description="Most tokens generated per answer.")
    batch_size: int = Field(8, gt=0, description="Prompts generated together (left-padded).")


class SftParams(BaseModel):
    """``task.params`` for ``lm/sft``: instruction or chat data you bring, as jsonl."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(
        description="jsonl: instruction/input/output, messages (OpenAI) or conversations (ShareGPT)."
    )
    dev_file: str | None = Field(None, description="Held-out rows in the same shapes (loss, perplexity, generation).")
    template: TemplateName = Field(
        "auto",
        description="Chat template: auto = the tokenizer's own; chatml or alpaca for a base model without one.",
    )
    generation: Generation = Field(default_factory=Generation, description="Dev generation metrics.")
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows.")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev rows.")


class TextParams(BaseModel):
    """``task.params`` for ``lm/text``: raw text for continued (causal) pretraining."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(description="Text: .txt (one document a line) or .jsonl (one object a line).")
    dev_file: str | None = Field(None, description="Held-out text; null = hold out dev_fraction of the documents.")
    dev_fraction: float = Field(0.05, gt=0, lt=1, description="Share of train_file held out when dev_file is null.")
    format: Literal["auto", "txt", "jsonl"] = Field("auto", description="File format; auto = from the extension.")
    text_field: str = Field("text", description="jsonl only: the field holding a document's text.")
    pack: bool = Field(
        True,
        description="Join documents (EOS between two) and cut into data.max_length blocks, as GPT pretraining does "
        "(attention spans document boundaries inside a block); false = one block per document, truncated.",
    )
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training documents.")
    max_dev_samples: int | None = Field(None, gt=0, description="Use only the first N dev documents.")
