"""How sure a report can be: 95% t-intervals of a method's mean over seeds, and which methods they cannot tell apart.

The interval is the Student t-interval of the mean, ``mean ± t(0.975, n−1) · s / √n`` with the sample standard
deviation ``s`` of the n seeds: it assumes the seeds' scores scatter normally around the method's true mean,
and it is wide for few seeds (t = 12.7 for two, 4.3 for three). Two methods whose intervals overlap are not
separated by the grid: the difference of their means could be seed noise. Overlap is the cautious reading —
two means can differ at the 5% level while their intervals still overlap a little — so "not separated" is
a statement about what this grid shows, never that the methods are equal.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

# t(0.975, df) for df = 1..30 (two-sided 95%); beyond 30 the normal 1.96 is within 2% of it
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
INTERVAL = "95% Student t-interval of the mean over seeds (mean ± t(0.975, n−1)·s/√n)"


def t_quantile(df: int) -> float:
    """t(0.975, df): the two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    return T975[df - 1] if df <= len(T975) else 1.96


def t_interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% t-interval of the mean of ``values``; None for fewer than two (no spread to go on)."""
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t_quantile(len(values) - 1) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two intervals share a point (False when either is missing)."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def not_separated(rows: list[Any]) -> dict[str, list[str]]:
    """Per task with a best row: the other methods whose 95% t-interval overlaps the best one's."""
    out: dict[str, list[str]] = {}
    for task in dict.fromkeys(r.task for r in rows):
        mine = [r for r in rows if r.task == task]
        best = next((r for r in mine if r.best), None)
        if best is None:
            continue
        close = [r.method for r in mine if r is not best and overlap(t_interval(r.values), t_interval(best.values))]
        if close:
            out[task] = close
    return out
