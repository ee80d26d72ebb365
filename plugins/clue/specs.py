"""The one table of CLUE / FewCLUE task specs: files, fields, fixed label spaces, submission names.

Label spaces are constants, in the order of the Hugging Face hub ``clue`` dataset's ``ClassLabel``
where the task is on the hub (so a label id means the same thing whether rows came from a local
folder or the hub), and FewCLUE tasks derived from a CLUE task reuse that task's list. They are never
inferred from the rows loaded, so a subset (``max_train_samples``) cannot shift label ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peftkit.kit import MULTIPLE_CHOICE, SEQUENCE_CLASSIFICATION

Kind = Literal["single", "pair", "wsc", "csl", "chid"]

BINARY = ("0", "1")
# HF clue: tnews ClassLabel = the 15 codes in numeric order (there is no 105 and no 111).
TNEWS = ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115", "116")
IFLYTEK = tuple(str(i) for i in range(119))  # HF clue: [str(label) for label in range(119)]
NLI = ("neutral", "entailment", "contradiction")  # HF clue cmnli / ocnli order (not the alphabetical one)
WSC = ("true", "false")  # HF clue cluewsc2020: ClassLabel(names=["true", "false"]), so true = 0
CHID = tuple(str(i) for i in range(7))  # FewCLUE chid: `answer` is the position of the idiom among 7 candidates
SENTIMENT = ("Negative", "Positive")  # eprstmt is FewCLUE-only (not on the hub); Positive = 1 as usual
# FewCLUE csldcp/labels_all.txt, in file order (67 disciplines; not on the hub).
CSLDCP = (
    "材料科学与工程",
    "作物学",
    "口腔医学",
    "药学",
    "教育学",
    "水利工程",
    "理论经济学",
    "食品科学与工程",
    "畜牧学/兽医学",
    "体育学",
    "核科学与技术",
    "力学",
    "园艺学",
    "水产",
    "法学",
    "地质学/地质资源与地质工程",
    "石油与天然气工程",
    "农林经济管理",
    "信息与通信工程",
    "图书馆、情报与档案管理",
    "政治学",
    "电气工程",
    "海洋科学",
    "民族学",
    "航空宇航科学与技术",
    "化学/化学工程与技术",
    "哲学",
    "公共卫生与预防医学",
    "艺术学",
    "农业工程",
    "船舶与海洋工程",
    "计算机科学与技术",
    "冶金工程",
    "交通运输工程",
    "动力工程及工程热物理",
    "纺织科学与工程",
    "建筑学",
    "环境科学与工程",
    "公共管理",
    "数学",
    "物理学",
    "林学/林业工程",
    "心理学",
    "历史学",
    "工商管理",
    "应用经济学",
    "中医学/中药学",
    "天文学",
    "机械工程",
    "土木工程",
    "光学工程",
    "地理学",
    "农业资源利用",
    "生物学/生物科学与工程",
    "兵器科学与技术",
    "矿业工程",
    "大气科学",
    "基础医学/临床医学",
    "电子科学与技术",
    "测绘科学与技术",
    "控制科学与工程",
    "军事学",
    "中国语言文学",
    "新闻传播学",
    "社会学",
    "地球物理学",
    "植物保护",
)

FEW_TRAIN_SPLITS = ("train_few_all", "train_0", "train_1", "train_2", "train_3", "train_4")
FEW_DEV_SPLITS = ("dev_few_all", "dev_0", "dev_1", "dev_2", "dev_3", "dev_4", "test_public")


@dataclass(frozen=True)
class TaskSpec:
    """Everything that differs between CLUE tasks; :class:`~peftkit_plugins.clue.task.ClueTask` does the rest.

    Attributes:
        name: registered task name (``clue/afqmc``).
        folder: the task's folder under ``$PEFTKIT_CLUE_DIR`` (``afqmc``, ``fewclue/bustm``).
        labels: the fixed label space in id order, in the dataset's own vocabulary.
        kind: how a row becomes text(s): ``single``/``pair`` read ``fields``; ``wsc`` marks the two
            spans in ``text``; ``csl`` pairs the joined keywords with the abstract; ``chid`` makes one
            multiple-choice row per passage (each candidate idiom filled into the blank).
        fields: the text field(s) for ``single``/``pair``.
        prediction_file: the submission file name the benchmark expects.
        summary: one line for ``peftkit plugins``.
        hub_config: the HF ``clue`` config name, or None when the task is not on the hub.
        few: a FewCLUE task (split files train_0..4 / dev_0..4 / *_few_all / test_public / test).
        skip_labels: label values meaning "no gold label"; such rows are dropped (OCNLI/CMNLI ``-``).
        train_files: candidate train file names, first existing wins (OCNLI ships ``train.50k.json``).
        label_file: a file in the folder listing the labels; checked against ``labels`` when present.
        hub_id: hub column used as the submission id (HF drops the files' ``id`` except csl's ``corpus_id``).
        hub_prediction_file: submission name when rows come from the hub, if its test set differs.
        label_field: the row field holding the gold label (ChID: ``answer``, a candidate position).
        older_tests: ``(test rows, submission name)`` of an earlier release whose test set differs: a local
            folder whose test file has that many rows gets that name (CLUEWSC2020 1.0: 2,574 rows).
    """

    name: str
    folder: str
    labels: tuple[str, ...]
    kind: Kind
    prediction_file: str
    summary: str
    fields: tuple[str, ...] = ()
    hub_config: str | None = None
    few: bool = False
    skip_labels: frozenset[str] = field(default_factory=frozenset)
    train_files: tuple[str, ...] = ("train.json",)
    label_file: str | None = None
    hub_id: str = "idx"
    hub_prediction_file: str | None = None
    label_field: str = "label"
    older_tests: tuple[tuple[int, str], ...] = ()

    @property
    def head(self) -> str:
        """The model head: ``multiple-choice`` for ChID, ``sequence-classification`` for the rest."""
        return MULTIPLE_CHOICE if self.kind == "chid" else SEQUENCE_CLASSIFICATION


_NO_GOLD = frozenset({"-"})


def _clue(
    config: str,
    labels: tuple[str, ...],
    kind: Kind,
    fields: tuple[str, ...],
    predict: str,
    summary: str,
    **extra: object,
) -> TaskSpec:
    return TaskSpec(
        name=f"clue/{config}",
        folder=config,
        labels=labels,
        kind=kind,
        fields=fields,
        prediction_file=predict,
        summary=f"CLUE {summary}",
        hub_config=config,
        **extra,
    )  # type: ignore[arg-type]


def _few(
    task: str, labels: tuple[str, ...], kind: Kind, fields: tuple[str, ...], predict: str, summary: str, **extra: object
) -> TaskSpec:
    return TaskSpec(
        name=f"fewclue/{task}",
        folder=f"fewclue/{task}",
        labels=labels,
        kind=kind,
        fields=fields,
        prediction_file=predict,
        summary=f"FewCLUE {summary}",
        few=True,
        **extra,
    )  # type: ignore[arg-type]


# Submission names: CLUE 1.1 (<task>_predict.json, with 11 where the test set changed in 1.1) and the
# FewCLUE leaderboard's examples (an `f` suffix where the name would clash with the CLUE task's file).
SPECS: tuple[TaskSpec, ...] = (
    _clue(
        "afqmc",
        BINARY,
        "pair",
        ("sentence1", "sentence2"),
        "afqmc_predict.json",
        "AFQMC: do two Ant Financial questions mean the same? (binary; accuracy)",
    ),
    _clue(
        "tnews",
        TNEWS,
        "single",
        ("sentence",),
        "tnews11_predict.json",
        "TNEWS: topic of a Toutiao news headline (15 classes; accuracy)",
        label_file="labels.json",
    ),
    _clue(
        "iflytek",
        IFLYTEK,
        "single",
        ("sentence",),
        "iflytek_predict.json",
        "IFLYTEK: category of an app description (119 classes; accuracy)",
        label_file="labels.json",
    ),
    _clue(
        "cmnli",
        NLI,
        "pair",
        ("sentence1", "sentence2"),
        "cmnli_predict.json",
        "CMNLI: natural language inference, premise/hypothesis (3 classes; accuracy)",
        skip_labels=_NO_GOLD,
    ),
    _clue(
        "ocnli",
        NLI,
        "pair",
        ("sentence1", "sentence2"),
        "ocnli_50k_predict.json",
        "OCNLI: original Chinese NLI (3 classes; accuracy)",
        skip_labels=_NO_GOLD,
        train_files=("train.json", "train.50k.json"),
    ),
    _clue(
        "cluewsc2020",
        WSC,
        "wsc",
        (),
        "cluewsc11_predict.json",
        "CLUEWSC2020: does the marked pronoun refer to the marked noun? (true/false; accuracy)",
        hub_prediction_file="cluewsc10_predict.json",  # the hub serves the 2,574-row CLUE 1.0 test set
        older_tests=((2574, "cluewsc10_predict.json"),),
    ),  # CLUE 1.1's test.json has 290 rows
    _clue(
        "csl",
        BINARY,
        "csl",
        (),
        "csl_predict.json",
        "CSL: are all keywords real keywords of the abstract? (binary; accuracy)",
        hub_id="corpus_id",
    ),
    _few(
        "tnews",
        TNEWS,
        "single",
        ("sentence",),
        "tnewsf_predict.json",
        "TNEWS few-shot (15 classes; integer labels in the files)",
        label_file="label_index2en2zh.json",
    ),
    _few(
        "iflytek",
        IFLYTEK,
        "single",
        ("sentence",),
        "iflytekf_predict.json",
        "IFLYTEK few-shot (119 classes; integer labels in the files)",
    ),
    _few(
        "ocnli",
        NLI,
        "pair",
        ("sentence1", "sentence2"),
        "ocnlif_predict.json",
        "OCNLI few-shot (3 classes)",
        skip_labels=_NO_GOLD,
    ),
    _few("csl", BINARY, "csl", (), "cslf_predict.json", "CSL few-shot: keywords vs abstract (binary)"),
    _few("cluewsc", WSC, "wsc", (), "cluewscf_predict.json", "CLUEWSC few-shot: pronoun coreference (true/false)"),
    _few(
        "eprstmt",
        SENTIMENT,
        "single",
        ("sentence",),
        "eprstmt_predict.json",
        "EPRSTMT: e-commerce review sentiment (Positive/Negative)",
    ),
    _few(
        "bustm",
        BINARY,
        "pair",
        ("sentence1", "sentence2"),
        "bustm_predict.json",
        "BUSTM: do two assistant utterances mean the same? (binary)",
    ),
    _few(
        "csldcp",
        CSLDCP,
        "single",
        ("content",),
        "csldcp_predict.json",
        "CSLDCP: discipline of a paper abstract (67 classes)",
        label_file="labels_all.txt",
    ),
    _few(
        "chid",
        CHID,
        "chid",
        (),
        "chidf_predict.json",
        "ChID: which of 7 idioms fills the blank in a passage (multiple choice; accuracy)",
        label_field="answer",
    ),
)
