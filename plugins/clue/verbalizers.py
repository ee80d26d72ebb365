"""How each CLUE / FewCLUE task is put to a decoder scored by likelihood (the ``label-likelihood`` objective): a
prompt (``{text}``, ``{text_pair}``) and one wording per label, in label-id order.

The wordings are the Chinese names of the labels, as OpenCompass's PPL prompts use them: TNEWS's ``label_desc``
topics in Chinese (故事, 文化, ...), 是/否 for the yes/no questions (AFQMC, BUSTM, CSL, CLUEWSC), 中立/蕴含/矛盾 for
NLI, 负面/正面 for EPRSTMT, IFLYTEK's 119 app categories by the dataset's own ``label_des`` (打车, 地图导航, ...);
CSLDCP's labels already are Chinese discipline names. ChID is multiple choice: its candidates are the passages with
each idiom filled in, scored as they are. ``task.params.verbalizers`` / ``prompt`` override these. A test checks that
every task has wordings; the label-likelihood objective warns at ``peftkit validate`` when a task's labels would be
scored as bare numbers.
"""

from __future__ import annotations

from peftkit_plugins.clue.specs import TaskSpec

YES_NO = ("否", "是")  # label "0" = no, "1" = yes (AFQMC, BUSTM, CSL)
TNEWS_WORDS = (
    "故事", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事", "旅游", "国际", "股票", "农业", "游戏",
)  # fmt: skip  # TNEWS label order (100 … 116): news_story, news_culture, ... news_game

# IFLYTEK label order ("0" … "118"): the dataset's own label_des for each label id, as every FewCLUE iflytek row
# carries it (CLUE IFLYTEK's labels.json holds the same list)
IFLYTEK_WORDS = (
    "打车", "地图导航", "免费WIFI", "租车", "同城服务", "快递物流", "婚庆", "家政", "公共交通", "政务",  # 0–9
    "社区服务", "薅羊毛", "魔幻", "仙侠", "卡牌", "飞行空战", "射击游戏", "休闲益智", "动作类", "体育竞技",  # 10–19
    "棋牌中心", "经营养成", "策略", "MOBA", "辅助工具", "约会社交", "即时通讯", "工作社交", "论坛圈子", "婚恋社交",  # 20–29
    "情侣社交", "社交工具", "生活社交", "微博博客", "新闻", "漫画", "小说", "技术", "教辅", "问答交流",  # 30–39
    "搞笑", "杂志", "百科", "影视娱乐", "求职", "兼职", "视频", "短视频", "音乐", "直播",  # 40–49
    "电台", "K歌", "成人", "中小学", "职考", "公务员", "英语", "视频教育", "高等教育", "成人教育",  # 50–59
    "艺术", "语言(非英语)", "旅游资讯", "综合预定", "民航", "铁路", "酒店", "行程管理", "民宿短租", "出国",  # 60–69
    "工具", "亲子儿童", "母婴", "驾校", "违章", "汽车咨询", "汽车交易", "日常养车", "行车辅助", "租房",  # 70–79
    "买房", "装修家居", "电子产品", "问诊挂号", "养生保健", "医疗服务", "减肥瘦身", "美妆美业", "菜谱", "餐饮店",  # 80–89
    "体育咨讯", "运动健身", "支付", "保险", "股票", "借贷", "理财", "彩票", "记账", "银行",  # 90–99
    "美颜", "影像剪辑", "摄影修图", "相机", "绘画", "二手", "电商", "团购", "外卖", "电影票务",  # 100–109
    "社区超市", "购物咨询", "笔记", "办公", "日程管理", "女性", "经营", "收款", "其他",  # 110–118
)  # fmt: skip

# by the task's folder name without the fewclue/ prefix: (prompt, wordings or None = the label names)
DEFAULTS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "afqmc": ("问题一：{text}\n问题二：{text_pair}\n两个问题的意思相同吗？答：", YES_NO),
    "bustm": ("句子一：{text}\n句子二：{text_pair}\n两句话的意思相同吗？答：", YES_NO),
    "tnews": ("新闻标题：{text}\n这条新闻的类别是：", TNEWS_WORDS),
    "iflytek": ("应用描述：{text}\n这款应用的类别是：", IFLYTEK_WORDS),
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
