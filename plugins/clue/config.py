"""``task.params`` for the CLUE (``clue/*``) and FewCLUE (``fewclue/*``) tasks."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from peftkit_plugins.clue.specs import FEW_DEV_SPLITS, FEW_TRAIN_SPLITS

ENV = "PEFTKIT_CLUE_DIR"

FewTrainSplit = Literal[FEW_TRAIN_SPLITS]  # type: ignore[valid-type]
FewDevSplit = Literal[FEW_DEV_SPLITS]  # type: ignore[valid-type]


class _Caps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(
        None,
        description=f"This task's own folder in the official format (one JSON object per line), e.g. /data/clue/afqmc. "
        f"null = ${ENV}/<task folder> (e.g. ${ENV}/afqmc, ${ENV}/fewclue/bustm) when {ENV} is set.",
    )
    max_train_samples: int | None = Field(
        None,
        gt=0,
        description="Use only N training examples (quick runs; lower accuracy): CLUE the first N, FewCLUE a "
        "fixed random N (its files are sorted by class). null = all.",
    )
    max_dev_samples: int | None = Field(
        None,
        gt=0,
        description="Evaluate on only N dev examples (faster, noisier numbers): CLUE the first N, FewCLUE a "
        "fixed random N (its files are sorted by class). null = all.",
    )

    verbalizers: list[str] | dict[str, str] | None = Field(
        None,
        description="Decoder runs (task.objective: label-likelihood): one wording per label, as a list in label "
        "order or a mapping label -> wording; null = the task's defaults (peftkit_plugins.clue.verbalizers).",
    )
    prompt: str | None = Field(
        None,
        description="Decoder runs: the prompt before the wording, with {text} and {text_pair}; null = the default.",
    )
    generate: bool = Field(
        False,
        description="Decoder runs: also answer each dev row by greedy generation and report exact_match (the "
        "answer starts with the gold wording) and answer_invalid (with no wording), OpenCompass's gen protocol "
        "beside the likelihood one; costs one short generation per row at each evaluation.",
    )


class ClueParams(_Caps):
    """``task.params`` for ``clue/*``: a local CLUE folder (train.json, dev.json, test.json) or the hub."""

    source: Literal["auto", "local", "hub"] = Field(
        "auto",
        description=f"Where rows come from. auto = data_dir, else ${ENV}/<task>, else the Hugging Face hub `clue` "
        "dataset (needs a network); local = a folder only; hub = always the hub.",
    )

    @model_validator(mode="after")
    def _hub_has_no_folder(self) -> ClueParams:
        if self.source == "hub" and self.data_dir is not None:
            raise ValueError(f"data_dir ({self.data_dir!r}) cannot be used with source: hub; remove one of them")
        return self


class FewClueParams(_Caps):
    """``task.params`` for ``fewclue/*``: a local FewCLUE folder (FewCLUE's ``datasets/<task>``)."""

    train_split: FewTrainSplit = Field(
        "train_few_all",
        description="FewCLUE file to train on. train_few_all (the union of train_0..4, e.g. 160 rows for binary tasks) "
        "gives steadier numbers for comparing methods; train_0 is the single-run leaderboard protocol.",
    )
    dev_split: FewDevSplit | None = Field(
        None,
        description="Labelled file to evaluate on (best checkpoint and final metrics). null = the dev file paired with "
        "train_split (train_0 → dev_0, train_few_all → dev_few_all), as FewCLUE pairs them. test_public is what "
        "FewCLUE's published tables report, but as dev_split it also picks the checkpoint on those rows.",
    )

    test_split: Literal["test", "test_public"] = Field(
        "test",
        description="File `eval.predict` predicts. test = FewCLUE's unlabelled test set, whose predictions are the "
        "submission (eprstmt_predict_0.json); test_public = its labelled public test set, the one FewCLUE's published "
        "tables report: predictions go to eprstmt_predict_0_test_public.json and the accuracy to metrics.json `test`, "
        "measured once on the checkpoint dev picked.",
    )

    @property
    def dev_file(self) -> str:
        """The dev split in use: ``dev_split``, or the one paired with ``train_split``."""
        return self.dev_split or self.train_split.replace("train_", "dev_", 1)

    @property
    def run_suffix(self) -> str:
        """FewCLUE's name for the training file's run in submission files: ``0`` … ``4``, or ``all``."""
        return self.train_split.removeprefix("train_").replace("few_all", "all")
