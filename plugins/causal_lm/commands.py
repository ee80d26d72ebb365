"""``peftkit generate RUN_DIR`` and ``peftkit chat RUN_DIR``: answers from a finished decoder run, streamed.

Both format prompts with the run's chat template (``task.params.template`` of an ``lm/sft`` run, else the
tokenizer's own, else chatml) and decode greedily unless ``--sample`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from peftkit import DataError, PeftkitError


def add_commands(sub: Any) -> None:
    g = sub.add_parser("generate", help="Answer prompts with a finished decoder run (streamed to the terminal).")
    g.add_argument("run_dir", help="A finished run folder (recipe.yaml + model/).")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="A prompt (repeatable).")
    src.add_argument("--prompt-file", help="One prompt a line (or jsonl with 'prompt'); answers go out as jsonl.")
    _common(g)
    g.add_argument("--batch-size", type=int, default=8, help="Prompts of a --prompt-file generated together.")
    g.set_defaults(func=cmd_generate)
    c = sub.add_parser("chat", help="Talk to a finished decoder run in the terminal (/reset, /exit).")
    c.add_argument("run_dir", help="A finished run folder (recipe.yaml + model/).")
    _common(c)
    c.set_defaults(func=cmd_chat)
    z = sub.add_parser("zeroshot", help="Dev metrics of a recipe's base model, untrained: the baseline to beat.")
    z.add_argument("recipe", help="A recipe file (its model, task and data settings are used; nothing trains).")
    z.add_argument("overrides", nargs="*", help="key=value changes to the recipe.")
    z.add_argument("--output", help="Also write the metrics to this JSON file.")
    z.set_defaults(func=cmd_zeroshot)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=256, help="Most tokens per answer (default 256).")
    p.add_argument("--system", help="A system message put before the conversation.")
    p.add_argument("--raw", action="store_true", help="Send the prompt as it is, without the chat template.")
    p.add_argument("--sample", action="store_true", help="Sample (temperature 0.7, top-p 0.9) instead of greedy.")
    p.add_argument("--seed", type=int, default=0, help="Seed for --sample.")


class Session:
    """A loaded run: model, tokenizer, template and stop tokens."""

    def __init__(self, run_dir: str, args: argparse.Namespace, *, chat: bool = False) -> None:
        import torch

        from peftkit import load_run
        from peftkit_plugins.causal_lm.chat import run_template, stop_ids
        from peftkit_plugins.causal_lm.likelihood import LabelLikelihood

        setup, model = load_run(run_dir)
        if "CausalLM" not in type(getattr(model, "base_model", model)).__name__ and not hasattr(model, "generate"):
            raise PeftkitError(f"{run_dir}: the run's model cannot generate text (it is not a decoder language model)")
        self.tok, self.args = setup.tokenizer, args
        self.template = run_template(self.tok, setup.tparams)
        # a label-likelihood run learnt the task's plain prompts (BOS, then the text): a chat template it never saw
        # can change its answers (a prefix-tuned run's most of all), so its prompts go in as written
        self.plain = isinstance(setup.objective, LabelLikelihood)
        self.raw = args.raw or self.plain
        if chat and self.plain:
            raise PeftkitError(
                f"{run_dir} scores {setup.recipe.task.name} by label likelihood on plain prompts, so there is no "
                f"conversation to keep in a chat template: answer prompts with `peftkit generate {run_dir} --prompt "
                f"...`, or write the test split's labels with `peftkit predict {run_dir}`"
            )
        if self.raw and args.system:
            raise PeftkitError(
                "--system puts a system turn into the chat template, and these prompts go in without one "
                + ("(--raw)" if args.raw else f"({run_dir} trained on plain prompts)")
                + "; write the instruction into the prompt instead"
            )
        if self.plain and not args.raw:
            print(
                f"note: {run_dir} scores {setup.recipe.task.name} by label likelihood and trained on plain prompts, not "
                "chat turns: prompts go in as written (after the BOS token), without the chat template",
                file=sys.stderr,
            )
        self.stop = stop_ids(self.tok, self.template)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device)
        torch.manual_seed(args.seed)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        from peftkit_plugins.causal_lm.chat import render

        if self.raw:
            return list(self.tok(messages[-1]["content"])["input_ids"])
        sys_msg = [{"role": "system", "content": self.args.system}] if self.args.system else []
        text = render(self.tok, sys_msg + messages, self.template, prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def config(self) -> Any:
        from transformers import GenerationConfig

        extra = {"do_sample": True, "temperature": 0.7, "top_p": 0.9} if self.args.sample else {"do_sample": False}
        return GenerationConfig(
            max_new_tokens=self.args.max_new_tokens, pad_token_id=self.tok.pad_token_id, eos_token_id=self.stop, **extra
        )

    def stream(self, ids: list[int]) -> str:
        """Generate one answer, printing its text as it comes; returns the whole answer."""
        import torch
        from transformers import TextStreamer

        from peftkit_plugins.causal_lm.generation import unwrap

        streamer = TextStreamer(self.tok, skip_prompt=True, skip_special_tokens=True)
        x = torch.as_tensor([ids], device=self.device)
        with torch.inference_mode():
            out = unwrap(self.model).generate(
                input_ids=x, attention_mask=torch.ones_like(x), generation_config=self.config(), streamer=streamer
            )
        return self.tok.decode(out[0, x.shape[1] :], skip_special_tokens=True).strip()


def cmd_generate(args: argparse.Namespace) -> int:
    """Answer prompts with a finished decoder run."""
    prompts = _read_prompts(Path(args.prompt_file)) if not args.prompt else []  # a bad file fails before loading
    s = Session(args.run_dir, args)
    if args.prompt:
        for p in args.prompt:
            s.stream(s.prompt_ids([{"role": "user", "content": p}]))
            print(flush=True)
        return 0
    from peftkit_plugins.causal_lm.generation import generate_ids

    ids = [s.prompt_ids([{"role": "user", "content": p}]) for p in prompts]
    answers, _ = generate_ids(
        s.model, ids, pad_id=int(s.tok.pad_token_id), stop=s.stop, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, device=s.device,
    )  # fmt: skip
    for p, a in zip(prompts, answers):
        out = {"prompt": p, "output": s.tok.decode(a, skip_special_tokens=True).strip()}
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


def _read_prompts(path: Path) -> list[str]:
    """The prompts of a text file (one a line) or a jsonl file (``{"prompt": ...}`` a line); blank lines are
    skipped. DataError naming the file and line for a line that is not JSON or holds no string ``prompt``."""
    if not path.is_file():
        raise DataError(f"--prompt-file: {path} does not exist")
    try:
        lines = [(n, ln) for n, ln in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1) if ln.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(f"--prompt-file: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix != ".jsonl":
        return [ln for _, ln in lines]
    prompts = []
    for n, ln in lines:
        try:
            row = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"--prompt-file: {path}:{n}: not valid JSON ({exc.msg}, column {exc.colno}); each line of a .jsonl "
                'file must be one object such as {"prompt": "..."}'
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise DataError(f"--prompt-file: {path}:{n} has no 'prompt' field holding a string")
        prompts.append(row["prompt"])
    return prompts


def cmd_chat(args: argparse.Namespace) -> int:
    """Talk to a finished decoder run: each line you type is a user turn; /reset starts over, /exit ends."""
    s = Session(args.run_dir, args, chat=True)
    messages: list[dict[str, str]] = []
    print("peftkit chat: type a message; /reset starts over, /exit (or Ctrl-D) ends.", file=sys.stderr)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print(file=sys.stderr)
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            messages = []
            continue
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        print("model> ", end="", flush=True)
        messages.append({"role": "assistant", "content": s.stream(s.prompt_ids(messages))})
        print(flush=True)


def cmd_zeroshot(args: argparse.Namespace) -> int:
    """Evaluate a recipe's base model on the task's dev split without training (zero-shot; for a decoder, e.g.
    likelihood scoring of each label's wording or generation on lm/sft prompts)."""
    from peftkit import load_recipe, zero_shot

    out = zero_shot(load_recipe(args.recipe, args.overrides))
    text = json.dumps(out, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0
