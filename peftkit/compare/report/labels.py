"""Naming the points of a scatter plot so that no name covers another name or another point.

Used by the trade-off plot, where methods often sit close (IA3 and BitFit 0.02% apart) or tie on both axes.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.text import Text
from matplotlib.transforms import Bbox

LABEL_PT = 8  # font size of a point's name
MARKER_PT = 5  # half the largest marker (markersize 10): a name must not cover another method's point
SAME_POINT_PX = 2.0  # points closer than this on screen are one point: they share one name
USUAL_OFFSET = (5.0, 4.0)  # a name's place, in points from its point, when nothing is in the way: right, above
Point = tuple[float, float, str, Any]  # x, y, name, color


def _coinciding(ax: Any, points: list[Point]) -> list[Point]:
    """Points that land on the same spot (tied metric and parameter share) as one point named ``"lora, ia3"``,
    in black, since no one method's color fits it."""
    groups: list[tuple[Any, Point, list[str]]] = []  # (screen position, first point, names)
    for p in points:
        at = ax.transData.transform(p[:2])
        same = next((g for g in groups if max(abs(g[0] - at)) < SAME_POINT_PX), None)
        if same:
            same[2].append(p[2])
        else:
            groups.append((at, p, [p[2]]))
    return [
        (p[0], p[1], ", ".join(dict.fromkeys(names)), p[3] if len(names) == 1 else "black") for _, p, names in groups
    ]


def _offsets(line: float, lines: int) -> list[tuple[float, float, str]]:
    """Where a name may go, nearest first, in points from its point: right of it, a line up or down, left of it,
    then further up or down (up to ``lines`` lines) on either side."""
    dx, dy = USUAL_OFFSET
    out = [
        (dx, dy, "left"),
        (dx, dy + line, "left"),
        (dx, dy - line, "left"),
        (-dx, dy, "right"),
        (-dx, dy + line, "right"),
        (-dx, dy - line, "right"),
    ]
    for n in range(2, lines + 1):
        for side, ha in ((dx, "left"), (-dx, "right")):
            out += [(side, dy + n * line, ha), (side, dy - n * line, ha)]
    return out


def _text_box(ann: Any, renderer: Any) -> Any:
    """The screen box of an annotation's text alone (not its line back to the point), at its current offset."""
    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _free_offset(probe: Any, renderer: Any, frame: Any, others: list[Any]) -> tuple[float, float, str]:
    """The nearest offset at which the probe's text covers none of ``others`` and stays inside ``frame``; else the
    nearest that covers none of them; else the usual one (right of the point)."""
    px = probe.figure.dpi / 72.0
    line = _text_box(probe, renderer).height / px + 1
    fallback = None
    for dx, dy, ha in _offsets(line, math.ceil(frame.height / px / line)):
        probe.xyann = (dx, dy)
        probe.set_horizontalalignment(ha)
        box = _text_box(probe, renderer)
        if any(box.overlaps(o) for o in others):
            continue
        if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1):
            return dx, dy, ha
        fallback = fallback or (dx, dy, ha)
    return fallback or (*USUAL_OFFSET, "left")


def label_points(ax: Any, points: list[Point]) -> list[Any]:
    """Name each point, in its color, without names covering each other or another point: tied points share one
    name; a name with no room right of its point goes left of it or a line up or down, with a line back to the
    point. Call once the figure's layout is final. Returns the annotations."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    r = MARKER_PT * ax.figure.dpi / 72.0
    named = sorted(_coinciding(ax, points), key=lambda p: (p[0], -p[1]))  # a column top down: leader lines don't cross
    spots = [ax.transData.transform((x, y)) for x, y, *_ in named]
    markers = [Bbox.from_extents(sx - r, sy - r, sx + r, sy + r) for sx, sy in spots]
    out: list[Any] = []
    for i, (x, y, name, color) in enumerate(named):
        others = [_text_box(a, renderer) for a in out] + [m for j, m in enumerate(markers) if j != i]
        probe = ax.annotate(name, (x, y), textcoords="offset points", xytext=USUAL_OFFSET, fontsize=LABEL_PT)
        dx, dy, ha = _free_offset(probe, renderer, frame, others)
        probe.remove()
        moved = (
            {}
            if (dx, dy) == USUAL_OFFSET
            else {"arrowprops": {"arrowstyle": "-", "color": color, "lw": 0.8, "shrinkA": 1, "shrinkB": 4}}
        )
        out.append(
            ax.annotate(
                name,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha=ha,
                fontsize=LABEL_PT,
                color=color,
                **moved,
            )
        )
    return out
