"""One Task class for every CLUE / FewCLUE task; what differs lives in :mod:`peftkit_plugins.clue.specs`."""

from __future__ import annotations

import logging
import random
from typing import Any

from pydantic import BaseModel

from peftkit import DataError, Example
from peftkit.kit import MULTIPLE_CHOICE, classification_metrics
from peftkit_plugins.clue import sources
from peftkit_plugins.clue.config import ClueParams, FewClueParams
from peftkit_plugins.clue.rows import to_example
from peftkit_plugins.clue.specs import TaskSpec

log = logging.getLogger("peftkit")


class ClueTask:
    """A CLUE or FewCLUE task built from a :class:`TaskSpec` (classification; ChID multiple choice).

    Splits: ``train`` and ``dev`` are labelled (FewCLUE: the files chosen by ``train_split`` /
    ``dev_split``); ``test`` is the unlabelled file whose predictions form the submission, or with FewCLUE's
    ``test_split: test_public`` the labelled public test set (scored as well as predicted).
    """

    metric = "accuracy"
    splits = ("train", "dev", "test")

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.summary = spec.summary
        self.params_model: type[BaseModel] = FewClueParams if spec.few else ClueParams
        self.head = spec.head
        self._index = {label: i for i, label in enumerate(spec.labels)}

    def __repr__(self) -> str:
        return f"ClueTask({self.name!r})"

    def check_data(self, params: sources.Params) -> list[tuple[str, str]]:
        """For `peftkit validate`: the data folder a run on this machine would read exists and holds the train and
        dev files; or, when the hub is the source, the hub is not switched off (HF_DATASETS_OFFLINE /
        HF_HUB_OFFLINE)."""
        try:
            folder = sources.resolve_folder(self.spec, params)
            for split in ("train", "dev"):  # test is read only for predictions; a run refuses without it then
                if folder is not None:
                    sources.split_file(self.spec, folder, params, split)
        except DataError as exc:
            return [("task.params.data_dir", str(exc))]
        except OSError as exc:  # a name too long for this OS, no permission to look
            return [("task.params.data_dir", f"{str(params.data_dir)[:120]} cannot be checked: {exc.strerror}")]
        if folder is None and sources.hub_offline():
            return [
                (
                    "task.params.data_dir",
                    f"{self.name}: no local folder (task.params.data_dir or {sources.ENV}), so a run "
                    f"reads the Hugging Face hub dataset clue/{self.spec.hub_config}, but HF_DATASETS_OFFLINE/HF_HUB_OFFLINE "
                    "is set: only a copy already in the HF datasets cache would load",
                )
            ]
        return []

    def objective_options(self, params: sources.Params) -> dict[str, Any]:
        """For the ``label-likelihood`` objective: the prompt and label wordings (the recipe's, else defaults)."""
        from peftkit_plugins.clue.verbalizers import defaults

        out = defaults(self.spec)
        if params.verbalizers is not None:
            out["verbalizers"] = params.verbalizers
        if params.prompt is not None:
            out["prompt"] = params.prompt
        out["generate"] = params.generate
        return out

    def label_names(self, params: BaseModel) -> list[str]:
        """The task's fixed label space (the dataset's own label values, in hub ``ClassLabel`` order)."""
        return list(self.spec.labels)

    def load_split(self, params: sources.Params, split: str) -> list[Example]:
        """Read ``train``/``dev`` (capped by max_*_samples, after dropping no-gold rows) or the whole ``test``."""
        if split not in self.splits:
            raise DataError(f"{self.name}: unknown split {split!r}; choose one of {', '.join(self.splits)}")
        limit = {"train": params.max_train_samples, "dev": params.max_dev_samples}.get(split)
        folder = sources.resolve_folder(self.spec, params)
        if folder is None:
            rows = sources.hub_rows(self.spec, split, limit)
            log.info("%s %s: reading the Hugging Face hub dataset clue/%s", self.name, split, self.spec.hub_config)
        else:
            sources.check_label_file(self.spec, folder)
            path = sources.split_file(self.spec, folder, params, split)
            rows = sources.local_rows(path)
            log.info("%s %s: reading %s", self.name, split, path)
        out: list[Example] = []
        sampled = self.spec.few and limit is not None  # FewCLUE files are sorted by class: the first N is biased
        for where, line, row in rows:
            if limit is not None and len(out) >= limit and not sampled:
                break
            example = to_example(self.spec, row, where, line, self._index, labelled=self._labelled(params, split))
            if example is not None:
                out.append(example)
        if sampled and limit < len(out):
            keep = sorted(random.Random(f"{self.name}/{split}").sample(range(len(out)), limit))  # same rows every run
            out = [out[i] for i in keep]
        return out

    def _labelled(self, params: sources.Params, split: str) -> bool:
        """train and dev are; test is not, except FewCLUE's ``test_split: test_public``."""
        return split != "test" or getattr(params, "test_split", "test") == "test_public"

    def compute_metrics(self, predictions: Any, references: Any) -> dict[str, float]:
        """Accuracy (the CLUE metric) plus macro/micro/weighted F1 over the task's labels; ChID only accuracy (its
        labels are candidate positions, which have no class to average an F1 over)."""
        metrics = classification_metrics(predictions, references, num_labels=len(self.spec.labels))
        return {"accuracy": metrics["accuracy"]} if self.spec.head == MULTIPLE_CHOICE else metrics

    def prediction_file(self, params: sources.Params) -> str:
        """The benchmark's submission file name, e.g. ``afqmc_predict.json``; FewCLUE adds the training run, as its
        multi-run submission examples do: ``eprstmt_predict_0.json`` (train_0) … ``eprstmt_predict_all.json``.
        CLUEWSC2020 is named by the test set it predicts: ``cluewsc11_predict.json`` for CLUE 1.1's 290 rows,
        ``cluewsc10_predict.json`` for 1.0's 2,574 (a 1.0 folder, or the hub)."""
        folder = sources.resolve_folder(self.spec, params)
        if self.spec.hub_prediction_file and folder is None:
            return self.spec.hub_prediction_file
        if folder is not None and self.spec.older_tests:  # a folder of an earlier release (CLUEWSC2020 1.0)
            rows = sources.count_rows(folder / "test.json")
            return dict(self.spec.older_tests).get(rows, self.spec.prediction_file)
        if self.spec.few:  # FewCLUE names a submission by the training file's run: tnewsf_predict_0.json ... _all.json
            public = (
                "_test_public" if params.test_split == "test_public" else ""
            )  # not a submission: say so in the name
            return self.spec.prediction_file.replace(".json", f"_{params.run_suffix}{public}.json")
        return self.spec.prediction_file

    def format_prediction(self, example: Example, label_id: int, params: BaseModel) -> dict[str, Any]:
        """``{"id": <the test row's id>, "label": <label in the dataset's vocabulary>}``; ChID:
        ``{"id": ..., "answer": <position of the chosen idiom>}``.

        Labels are written as the strings the benchmark's submission examples use ("102" for TNEWS,
        "true" for WSC, "Positive" for EPRSTMT), also for FewCLUE TNEWS/IFLYTEK whose files store ints.
        """
        if self.spec.head == MULTIPLE_CHOICE:  # FewCLUE chidf_predict: {"id": 3000, "answer": 0}
            return {"id": example.id, "answer": label_id}
        return {"id": example.id, "label": self.spec.labels[label_id]}
