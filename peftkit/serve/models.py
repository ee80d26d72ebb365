"""What ``peftkit serve`` serves: finished runs and exported folders, loaded into engines.

A run whose objective can chat (it has the optional ``chat`` attribute, see ``Objective``) is a decoder run
served by ``/v1/chat/completions``: reloaded with its method (merged when it can be) and handed to
``objective.chat``. Decoder runs do not share a base: each is a model of its own.

Runs whose adapters (peft format) go on the same base are served from ONE copy of that base with each
run's adapter loaded by name (``PeftModel.load_adapter``); a batch switches to its adapter with
``set_adapter``. A base with a single adapter is merged into it (one matmul per layer instead of two).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit.errors import PeftkitError

log = logging.getLogger("peftkit.serve")


@dataclass
class Engine:
    """One model in memory (a base with zero or more adapters) and how to run it on texts."""

    model: Any
    tokenizer: Any
    use_token_types: bool
    adapters: list[str] = field(default_factory=list)
    active: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # No oneDNN weight prepacking here (peftkit.evaluation.prepack, used by evaluation): a server sees a new
    # (batch, width) shape on almost every pass, and with packed linears the process grew without bound
    # (measured: 870 -> 1,229 MiB over 800 forwards of random shapes, still growing when the same shapes
    # came again; without them flat at 794 -> 805 MiB; a 10-minute soak grew 200 MiB). Flat memory is
    # worth more to a service than the 1.12-1.19x that packing gives a fixed-shape evaluation.

    def encode(self, texts: list[str], pairs: list[str] | None, max_length: int) -> dict[str, list[list[int]]]:
        """Token ids per input (no padding yet: the batcher sorts by length first)."""
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=max_length)
        keep = ["input_ids"] + (["token_type_ids"] if self.use_token_types and "token_type_ids" in enc else [])
        return {k: enc[k] for k in keep}

    def probabilities(self, adapter: str | None, rows: list[dict[str, list[int]]]) -> Any:
        """Softmax over the labels for already-encoded rows, run as one padded batch (float32 numpy)."""
        import torch

        pad = int(self.tokenizer.pad_token_id or 0)
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long) if "token_type_ids" in rows[0] else None
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            mask[i, :n] = 1
            if types is not None:
                types[i, :n] = torch.tensor(r["token_type_ids"])
        batch = {"input_ids": ids, "attention_mask": mask, **({"token_type_ids": types} if types is not None else {})}
        # the active adapter is model-wide state: with adapters, one forward at a time; a plain model runs
        # forwards from several threads at once (--parallel)
        with self.lock if self.adapters else contextlib.nullcontext(), torch.inference_mode():
            if adapter is not None and adapter != self.active:
                self.model.set_adapter(adapter)
                self.active = adapter
            logits = self.model(**batch).logits.float()
        return torch.softmax(logits, dim=-1).numpy()


@dataclass
class ServedModel:
    """A name clients use, with its labels, input limits and the engine (+ adapter) that answers it."""

    name: str
    path: Path
    labels: list[str]
    max_length: int
    engine: Engine | None  # None for a decoder run (chat only)
    adapter: str | None
    kind: str  # "adapter on a shared base", "merged run", "export", "export int8", "decoder run"
    task: str = ""
    method: str = ""
    base: str = ""
    chat: Any = None  # the objective's chat object (peftkit.plugin.contracts.Objective): /v1/chat/completions

    def describe(self) -> dict[str, Any]:
        """The ``/v1/models`` entry."""
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "peftkit",
            "labels": self.labels,
            "max_length": self.max_length,
            "task": self.task,
            "method": self.method,
            "base": self.base,
            "served_as": self.kind,
            "endpoints": ["/v1/chat/completions"] if self.chat is not None else ["/v1/classify"],
        }


def parse_spec(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (the name is then the folder's name)."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).resolve().name, spec
    p = Path(path)
    if not p.is_dir():
        raise PeftkitError(
            f"serve: {path} is not a folder; give a finished run's output_dir or a `peftkit export` folder"
        )
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise PeftkitError(f"serve: model name {name!r} may hold only letters, digits, '-', '_' and '.'; use NAME=PATH")
    return name, p


def _is_run(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and (path / "model").is_dir()


def _peft_type(model_dir: Path) -> str | None:
    cfg = model_dir / "adapter_config.json"
    return json.loads(cfg.read_text(encoding="utf-8")).get("peft_type") if cfg.is_file() else None


def load_models(
    specs: list[tuple[str, Path]], *, merge_single: bool = True, precision: str | None = None
) -> list[ServedModel]:
    """Load every spec: runs with adapters grouped by base, other runs merged, exports as folders.

    ``precision`` (``PRECISIONS``) is how classifiers compute: float32, bfloat16 weights and activations, or
    dynamic int8 linear layers; None = float32, or int8 for an export marked ``--quantize int8``."""
    from peftkit.build.setup import prepare
    from peftkit.plugin.registry import get_registry
    from peftkit.recipe import load_recipe

    names = [n for n, _ in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PeftkitError(f"serve: model name {dup[0]!r} is given twice; name them apart with NAME=PATH")
    reg = get_registry()
    groups: dict[tuple[Any, ...], list[tuple[str, Path, Any]]] = {}
    out: list[ServedModel] = []
    for name, path in specs:
        if not _is_run(path):
            out.append(_load_export(name, path, precision))
            continue
        objective = _objective_of(path, reg)
        if getattr(objective, "chat", None) is not None:
            out.append(_load_chat_run(name, path, objective, merge_single))
            continue
        peft_type = _peft_type(path / "model")
        if peft_type is None:
            out.append(_load_merged_run(name, path, precision or "float32"))
            continue
        s = _run_facts(load_recipe(path / "recipe.yaml", [f"output_dir={path}"], registry=reg), reg)
        key = (str(s.model_path), len(s.labels), peft_type, repr(s.recipe.model.quantization), s.recipe.model.dtype)
        groups.setdefault(key, []).append((name, path, s))
    for members in groups.values():
        # only the first run of a group loads a tokenizer (a 250k-piece one is ~200 MB): they share the base's
        first = prepare(members[0][2].recipe, reg, splits=())
        members[0] = (members[0][0], members[0][1], first)
        out.extend(_load_shared_base(members, merge_single and len(members) == 1, precision or "float32"))
    order = {n: i for i, n in enumerate(names)}
    return sorted(out, key=lambda m: order[m.name])


CLASSIFIER = "AutoModelForSequenceClassification"  # what /v1/classify runs: one label distribution per input


def _run_facts(recipe: Any, reg: Any) -> Any:
    """What grouping and describing a run need (no tokenizer, no data): recipe, method, task, labels, base."""
    from types import SimpleNamespace

    from peftkit.build.model import resolve_source
    from peftkit.recipe import task_params

    task = reg.tasks[recipe.task.name]
    objective = reg.objective_of(task, recipe.task.objective)
    if objective.auto_class != CLASSIFIER:
        raise PeftkitError(
            f"serve: {recipe.output_dir} trains the {objective.name!r} objective ({objective.auto_class}); "
            "/v1/classify serves sequence-classification runs, /v1/chat/completions runs of an objective that can chat"
        )
    labels = list(task.label_names(task_params(recipe, reg)))
    return SimpleNamespace(
        recipe=recipe, method=reg.methods[recipe.method.name], task=task, labels=labels,
        model_path=resolve_source(recipe.model, reg),
    )  # fmt: skip


def _objective_of(path: Path, reg: Any) -> Any:
    """The objective a finished run trained (read from its recipe; nothing loads)."""
    from peftkit.recipe import load_recipe

    recipe = load_recipe(path / "recipe.yaml", [f"output_dir={path}"], registry=reg)
    return reg.objective_of(reg.tasks[recipe.task.name], recipe.task.objective)


def _load_chat_run(name: str, path: Path, objective: Any, merge: bool) -> ServedModel:
    """A decoder run: the reloaded model (method merged when it can be: one matmul per layer) behind its
    objective's ``chat`` object."""
    from peftkit.evaluation.runs import load_run

    s, model = load_run(path)
    merged = merge and getattr(s.method, "can_merge", False) and not s.recipe.model.quantization
    if merged:
        model = s.method.merge(model)
    chat = objective.chat(setup=s, model=model.eval())
    log.info("model %s: decoder run, context %d tokens%s", name, chat.context_length, ", merged" if merged else "")
    return ServedModel(
        name, path, [], chat.context_length, None, None, "decoder run" + (" (merged)" if merged else ""),
        task=s.task.name, method=s.method.name, base=s.recipe.model.source, chat=chat,
    )  # fmt: skip


def _served(name: str, path: Path, s: Any, engine: Engine, adapter: str | None, kind: str) -> ServedModel:
    return ServedModel(
        name, path, list(s.labels), s.recipe.data.max_length, engine, adapter, kind,
        task=s.task.name, method=s.method.name, base=s.recipe.model.source,
    )  # fmt: skip


def _load_shared_base(members: list[tuple[str, Path, Any]], merge: bool, precision: str) -> list[ServedModel]:
    """One base model; every member's adapter loaded into it under the member's name."""
    from peft import PeftModel

    from peftkit.build.model import load_model, method_float_modules

    name0, path0, s0 = members[0]
    keep = method_float_modules(s0.method, s0.mparams, s0.model_path, 0, path0 / "model")
    base, _ = load_model(s0.model_path, s0.recipe.model, s0.labels, s0.tokenizer, keep_float=keep, head=s0.objective)
    model = PeftModel.from_pretrained(base, str(path0 / "model"), adapter_name=name0)
    for name, path, _ in members[1:]:
        model.load_adapter(str(path / "model"), adapter_name=name)
    if merge and getattr(s0.method, "can_merge", False) and not s0.recipe.model.quantization:
        model = s0.method.merge(model)
        engine = Engine(to_precision(model, precision).eval(), s0.tokenizer, s0.use_token_types)
        log.info("model %s: adapter merged into its base (%s)", name0, precision)
        return [_served(name0, path0, s0, engine, None, _kind("merged run", precision))]
    model = to_precision(model, precision).eval()
    engine = Engine(model, s0.tokenizer, s0.use_token_types, adapters=[n for n, _, _ in members], active=name0)
    log.info("base %s: %d adapters on one copy (%s)", s0.recipe.model.source, len(members), ", ".join(engine.adapters))
    return [_served(n, p, s, engine, n, _kind("adapter on a shared base", precision)) for n, p, s in members]


def _load_merged_run(name: str, path: Path, precision: str) -> ServedModel:
    """A run whose method changed the base weights (full, bitfit): its own merged model."""
    from peftkit.evaluation.runs import load_run

    s, model = load_run(path)
    if s.objective.auto_class != CLASSIFIER:
        raise PeftkitError(
            f"serve: {path} trains the {s.objective.name!r} objective; /v1/classify serves sequence-classification runs only"
        )
    if getattr(s.method, "can_merge", False) and not s.recipe.model.quantization:
        model = s.method.merge(model)
    engine = Engine(to_precision(model, precision).eval(), s.tokenizer, s.use_token_types)
    return _served(name, path, s, engine, None, _kind("merged run", precision))


PRECISIONS = ("float32", "bfloat16", "int8")


def to_precision(model: Any, precision: str) -> Any:
    """The model computing in ``precision``: as is (float32), cast to bfloat16, or dynamic-int8 linears."""
    if precision == "float32":
        return model
    if precision == "bfloat16":
        import torch

        return model.to(torch.bfloat16)
    if precision == "int8":
        from peftkit.serve.export import quantize_int8

        return quantize_int8(model)
    raise PeftkitError(f"serve: --precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def _kind(kind: str, precision: str) -> str:
    return kind if precision == "float32" else f"{kind} {precision}"


def _load_export(name: str, path: Path, precision: str | None) -> ServedModel:
    """A ``peftkit export`` folder (or any transformers text-classification folder)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from peftkit.build.model import quiet_transformers
    from peftkit.serve.export import EXPORT_FILE

    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise PeftkitError(
            f"serve: {path} is neither a finished run (recipe.yaml + model/) nor a transformers folder (config.json)"
        )
    quiet_transformers()
    meta_file = path / EXPORT_FILE
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if (path / "adapter_config.json").is_file():
        model = _load_adapter_export(path, meta)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(path))
    precision = precision or ("int8" if meta.get("quantize") == "int8" else "float32")
    model = to_precision(model, precision).eval()
    cfg = model.config
    labels = [cfg.id2label[i] for i in range(len(cfg.id2label))]
    max_length = int(meta.get("max_length") or min(tok.model_max_length, cfg.max_position_embeddings))
    types = "token_type_ids" in tok.model_input_names and int(getattr(cfg, "type_vocab_size", 0) or 0) > 1
    engine = Engine(model, tok, types)
    return ServedModel(
        name, path, labels, max_length, engine, None, _kind("export", precision),
        task=meta.get("task", ""), method=meta.get("method", ""), base=meta.get("source", ""),
    )  # fmt: skip


def _load_adapter_export(path: Path, meta: dict[str, Any]) -> Any:
    """An ``export --adapter`` folder over its base. The base's own config knows nothing of the task's labels
    (its head would be the default 2 LABEL_0/LABEL_1, and a head of another size would not load), so the
    labels come from ``peftkit_export.json``, as the card tells users to pass them."""
    from peft import AutoPeftModelForSequenceClassification

    labels = meta.get("labels")
    if not labels:  # a peft folder not made by `peftkit export`: the base config's labels are all there is
        from peftkit.serve.export import EXPORT_FILE

        log.warning("serve: %s has no %s; its labels are the base config's", path, EXPORT_FILE)
        return AutoPeftModelForSequenceClassification.from_pretrained(str(path), dtype="float32")
    return AutoPeftModelForSequenceClassification.from_pretrained(
        str(path), dtype="float32", num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )  # fmt: skip
