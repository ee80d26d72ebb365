"""How each CLUE / FewCLUE task is put to a decoder scored by likelihood (the ``label-likelihood`` objective): a
prompt (``{text}``, ``{text_pair}``) and one wording per label, in label-id order.

The wordings are the Chinese names of the labels, as OpenCompass's PPL prompts use them: TNEWS's ``label_desc``
topics in Chinese (故事, 文化, ...), 是/否 for the yes/no questions (AFQMC, BUSTM, CSL, CLUEWSC), 中立/蕴含/矛盾 for
NLI, 负面/正面 for EPRSTMT; CSLDCP's labels already are Chinese discipline names. IFLYTEK's 119 app categories
have no wording here: give ``task.params.verbalizers`` (its ``labels.json`` ``label_des`` values, in label order).
ChID is multiple choice: its candidates are the passages with each idiom filled in, scored as they are.
``task.params.verbalizers`` / ``prompt`` override these.
"""

from __future__ import annotations

from peftkit_plugins.clue.specs import TaskSpec

YES_NO = ("否", "是")  # label "0" = no, "1" = yes (AFQMC, BUSTM, CSL)
TNEWS_WORDS = (
    "故事", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事", "旅游", "国际", "股票", "农业", "游戏",
)  # fmt: skip  # TNEWS label order (100 … 116): news_story, news_culture, ... news_game

# by the task's folder name without the fewclue/ prefix: (prompt, wordings or None = the label names)
DEFAULTS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "afqmc": ("问题一：{text}\n问题二：{text_pair}\n两个问题的意思相同吗？答：", YES_NO),
    "bustm": ("句子一：{text}\n句子二：{text_pair}\n两句话的意思相同吗？答：", YES_NO),
    "tnews": ("新闻标题：{text}\n这条新闻的类别是：", TNEWS_WORDS),
    "cmnli": ("前提：{text}\n假设：{text_pair}\n前提与假设的关系是：", ("中立", "蕴含", "矛盾")),
    "ocnli": ("前提：{text}\n假设：{text_pair}\n前提与假设的关系是：", ("中立", "蕴含", "矛盾")),
    "cluewsc2020": ("{text}\n句中标出的代词指的是标出的名词吗？答：", ("是", "否")),  # labels: true, false
    "cluewsc": ("{text}\n句中标出的代词指的是标出的名词吗？答：", ("是", "否")),
    "csl": ("摘要：{text_pair}\n关键词：{text}\n这些都是这篇摘要的关键词吗？答：", YES_NO),
    "eprstmt": ("评论：{text}\n这条评论的情感是：", ("负面", "正面")),
    "csldcp": ("论文摘要：{text}\n这篇论文的学科是：", None),
    "chid": ("", None),
}


def defaults(spec: TaskSpec) -> dict[str, object]:
    """``{"prompt", "verbalizers"}`` for the task (verbalizers None: the label names, or the row's choices)."""
    prompt, words = DEFAULTS.get(spec.folder.removeprefix("fewclue/"), ("{text}\n{text_pair}\n", None))
    if words is not None and len(words) != len(spec.labels):
        raise AssertionError(f"{spec.name}: {len(words)} wordings for {len(spec.labels)} labels")  # a table bug
    return {"prompt": prompt, "verbalizers": list(words) if words else None}
