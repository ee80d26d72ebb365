"""Where CLUE rows come from: a local folder in the official format, or the Hugging Face hub ``clue`` dataset.

Both yield ``(where, line, row)`` with ``row`` in the *local file* format, so one converter
(:mod:`peftkit_plugins.clue.rows`) serves both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftkit import DataError
from peftkit.kit import read_rows
from peftkit_plugins.clue.config import ENV, ClueParams, FewClueParams
from peftkit_plugins.clue.specs import TaskSpec

HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
Rows = Iterator[tuple[str, int, dict[str, Any]]]
Params = ClueParams | FewClueParams


def resolve_folder(spec: TaskSpec, params: Params) -> Path | None:
    """The task's local folder, or None for the hub (raises DataError when neither is usable)."""
    source = getattr(params, "source", "local")
    if source == "hub":
        return None
    if params.data_dir:
        folder, how = Path(params.data_dir).expanduser(), f"task.params.data_dir={params.data_dir!r}"
    elif os.environ.get(ENV):
        folder, how = Path(os.environ[ENV]).expanduser() / spec.folder, f"{ENV}={os.environ[ENV]!r}"
    elif spec.few:
        raise DataError(
            f"{spec.name}: FewCLUE is not in the Hugging Face `clue` dataset, so it needs a local folder: set "
            f"task.params.data_dir to FewCLUE's datasets/{spec.folder.split('/')[-1]} folder, or {ENV} to a "
            f"folder holding {spec.folder}/ (from github.com/CLUEbenchmark/FewCLUE)"
        )
    elif source == "local":
        raise DataError(f"{spec.name}: task.params.source is 'local' but neither task.params.data_dir nor {ENV} is set")
    else:
        return None
    if not folder.is_dir():
        raise DataError(
            f"{spec.name}: data folder {folder} (from {how}) does not exist; it should hold the task's "
            f"{'train_few_all.json, dev_few_all.json, test.json' if spec.few else 'train.json, dev.json, test.json'}"
        )
    return folder


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off for datasets in this environment."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def split_file(spec: TaskSpec, folder: Path, params: Params, split: str) -> Path:
    """The file holding ``split`` (FewCLUE: the chosen train/dev split file)."""
    if isinstance(params, FewClueParams):
        names: tuple[str, ...] = (
            {"train": params.train_split, "dev": params.dev_file, "test": params.test_split}[split] + ".json",
        )
    else:
        names = spec.train_files if split == "train" else (f"{split}.json",)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{spec.name}: no {split} file in {folder} (looked for {', '.join(names)}); "
        f"files there: {', '.join(sorted(p.name for p in folder.glob('*.json'))) or 'none'}"
    )


def local_rows(path: Path) -> Rows:
    for line, row in read_rows(path, "jsonl"):
        yield str(path), line, row


def count_rows(path: Path) -> int | None:
    """Non-blank lines of a JSON-lines file (its rows), or None when it is not there."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def check_label_file(spec: TaskSpec, folder: Path) -> None:
    """When the folder ships a label list (tnews labels.json, csldcp labels_all.txt ...), it must match ours."""
    if spec.label_file is None or not (folder / spec.label_file).is_file():
        return
    path = folder / spec.label_file
    if path.suffix == ".txt":
        found = {ln.strip() for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()}
    else:
        found = {str(row["label"]) for _, row in read_rows(path, "jsonl") if "label" in row}
    if found != set(spec.labels):
        extra, missing = sorted(found - set(spec.labels)), sorted(set(spec.labels) - found)
        raise DataError(
            f"{path}: its labels differ from {spec.name}'s fixed label space (unexpected: {extra}, missing: "
            f"{missing}); is data_dir pointing at the right task?"
        )


def hub_rows(spec: TaskSpec, split: str, limit: int | None) -> Rows:
    """Rows of ``datasets.load_dataset("clue", config)``, converted to the local file format."""
    ds = load_hub(spec, split, limit)
    yield from convert_hub(spec, ds, f"hub clue/{spec.hub_config}[{HUB_SPLITS[split]}]")


def load_hub(spec: TaskSpec, split: str, limit: int | None) -> Any:
    """The hub split (sliced to ``limit`` rows); DataError with the local alternative when it cannot load."""
    import datasets

    hub_split = HUB_SPLITS[split] + (f"[:{limit}]" if limit else "")
    try:
        return datasets.load_dataset("clue", spec.hub_config, split=hub_split)
    except Exception as exc:  # offline, no route, hub changes ...: all end the same way for the user
        offline = hub_offline()
        why = (
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set, so only datasets already in the HF cache load"
            if offline
            else "this machine may have no network route to the hub"
        )
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(
            f"{spec.name}: cannot load the Hugging Face hub dataset clue/{spec.hub_config} ({type(exc).__name__}: {first}); "
            f"{why}. Without a network, use a local copy in the official CLUE format: set task.params.data_dir to the "
            f"task's folder (train.json, dev.json, test.json) or {ENV} to a folder holding {spec.folder}/"
        ) from None


def convert_hub(spec: TaskSpec, ds: Any, where: str) -> Rows:
    """Hub rows → local-format rows: ClassLabel ids back to label names (-1 = unlabelled), ids restored."""
    names = list(ds.features["label"].names) if "label" in ds.features else []
    if names and set(names) != set(spec.labels):
        raise DataError(
            f"{where}: the hub's label names {names} differ from {spec.name}'s fixed labels {list(spec.labels)}"
        )
    for n, row in enumerate(ds, 1):
        out = {k: v for k, v in row.items() if k not in ("label", "idx", "corpus_id")}
        if names and row.get("label") is not None and row["label"] >= 0:
            out["label"] = names[row["label"]]  # by name, so a reordered hub ClassLabel cannot flip labels
        out["id"] = row.get(spec.hub_id, n - 1)
        yield where, n, out
