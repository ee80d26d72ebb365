"""Scores of generated text against references: exact match, ROUGE-L and BLEU-4 over tokens that suit Chinese.

Tokens: every CJK character is one token (as OpenCompass and CLUE score Chinese), a run of Latin letters or digits
is one token, any other non-space character is one token. So ``"我爱NLP!"`` is ``我 爱 NLP !``.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[A-Za-z0-9]+|\S")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the table at a time)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: str, ref: str) -> float:
    """ROUGE-L F1 of one answer: LCS over tokens, harmonic mean of its precision and recall."""
    h, r = tokens(hyp), tokens(ref)
    lcs = _lcs(h, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def corpus_bleu(hyps: list[str], refs: list[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 in 0..1 (clipped n-gram precisions summed over all answers, brevity penalty), as sacrebleu
    computes it without smoothing: 0 when some n-gram order has no match anywhere."""
    match, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        h, r = tokens(hyp), tokens(ref)
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0 or min(match) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(match, total)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)


def generation_metrics(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """``exact_match`` (after stripping spaces at both ends), mean ``rouge_l`` and corpus ``bleu``, all 0..1."""
    n = max(len(refs), 1)
    return {
        "exact_match": sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / n,
        "rouge_l": sum(rouge_l(h, r) for h, r in zip(hyps, refs)) / n,
        "bleu": corpus_bleu(hyps, refs),
    }
