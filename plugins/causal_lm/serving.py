"""What ``peftkit serve`` answers ``POST /v1/chat/completions`` with: a finished decoder run, its chat template
and stop tokens (the same as ``peftkit generate`` and ``peftkit chat`` use), generating one answer at a time.

The server owns the API (stop strings, finish reasons, usage, streaming); this object owns the model: how
messages become prompt tokens, and how tokens are generated from them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from peftkit_plugins.causal_lm.chat import render, run_template, stop_ids
from peftkit_plugins.causal_lm.generation import unwrap


def context_length(model: Any, tokenizer: Any) -> int:
    """Tokens the model can attend to: ``max_position_embeddings``, else the tokenizer's (sane) limit, else 2048."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(n, int) and n > 0:
        return n
    t = getattr(tokenizer, "model_max_length", None)
    return t if isinstance(t, int) and 0 < t < 10**7 else 2048


class ServedChat:
    """A loaded decoder run that answers chat messages (see :meth:`CausalLM.chat`).

    Attributes:
        context_length: prompt + answer tokens the model can take.
        stop_ids: token ids that end an answer (EOS, the template's end-of-turn token).
    """

    def __init__(self, setup: Any, model: Any) -> None:
        import torch

        self.tokenizer = setup.tokenizer
        self.template = run_template(self.tokenizer, setup.tparams)
        self.stop_ids = stop_ids(self.tokenizer, self.template)
        self.model = unwrap(model).eval()
        self.device = next(self.model.parameters(), torch.empty(0)).device
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0])
        self.context_length = context_length(self.model, self.tokenizer)
        # one generation at a time per model: torch's threads already use the cores, and a seed must hold
        # for the whole of its generation (torch's random state is global)
        self._lock = threading.Lock()

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """``messages`` (OpenAI roles) through the run's chat template with the assistant's opening, as token ids;
        DataError when the template refuses the conversation (Gemma's wants user/assistant turns to alternate)."""
        text = render(self.tokenizer, messages, self.template, prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        """Text of answer tokens, special tokens left out."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        on_token: Callable[[list[int]], bool] | None = None,
    ) -> list[int]:
        """The answer's token ids (with the stop token that ended it, if one did): greedy when ``temperature`` is
        0, else sampled with that temperature and nucleus ``top_p`` (no top-k, as in OpenAI's API).
        ``on_token(ids so far)`` is called after every new token; returning True ends the answer there."""
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        cfg = GenerationConfig(
            max_new_tokens=max_tokens, pad_token_id=self.pad_id, eos_token_id=self.stop_ids or None,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )  # fmt: skip
        start = len(prompt)

        class Callback(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = bool(on_token(input_ids[0, start:].tolist())) if on_token else False
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        x = torch.as_tensor([prompt], device=self.device)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), generation_config=cfg,
                stopping_criteria=StoppingCriteriaList([Callback()]),
            )  # fmt: skip
        return out[0, start:].tolist()  # one row: nothing padded
