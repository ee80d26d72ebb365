"""The human-readable pages of a report: markdown and a self-contained HTML page (plots inlined as base64).

Both render one document — a list of blocks built by :func:`document` from :mod:`.sections` — so the two
pages always say the same things in the same order.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from peftkit.compare.report.runs import SearchRecord
from peftkit.compare.report.sections import (
    Table,
    detail_table,
    intro,
    run_lines,
    search_table,
    significance_lines,
    summary_table,
)
from peftkit.compare.report.settings import settings_lines
from peftkit.compare.report.tables import Row, is_fraction

PLOT_TITLES = {
    "tradeoff": "Metric vs trainable parameters (log scale)",
    "bars": "Per-task metric (error bars: std over seeds)",
    "curves": "Dev metric during training (mean over seeds; band: ± std)",
    "search": "Search: each trial's score against the searched value (★ = chosen)",
}
Block = tuple[
    str, Any
]  # ("h2", text) | ("paras", [text]) | ("table", Table) | ("list", [text]) | ("plot", (key, path))


def document(
    rows: list[Row],
    avg: dict[str, Any],
    settings: dict[str, Any],
    plots: dict[str, Path],
    searches: list[SearchRecord] = (),
) -> list[Block]:
    """The report's blocks, in reading order."""
    blocks: list[Block] = [("paras", intro(rows, avg, settings, searches))]
    blocks += [("h2", "Summary"), ("table", summary_table(rows, avg))]
    blocks += [("h2", "Which differences the seeds support"), ("list", significance_lines(rows))]
    blocks += [("h2", "Details"), ("table", detail_table(rows))]
    if searches:
        blocks += [("h2", "Searches"), ("table", search_table(list(searches), is_fraction(rows)))]
    blocks += [("h2", "Plots"), *(("plot", item) for item in plots.items())]
    blocks += [("h2", "Settings"), ("list", [line[2:] for line in settings_lines(settings)])]
    blocks += [("h2", "Runs"), ("list", [line[2:] for line in run_lines(rows)])]
    return blocks


def _numeric(table: Table) -> list[bool]:
    """Which columns hold numbers (right-aligned) rather than names, judged by the first row."""
    header, body = table
    return [bool(body) and body[0][i][0][:1] in "0123456789—-" for i in range(len(header))]


def _md_table(table: Table) -> list[str]:
    header, body = table
    align = ["---:" if num else "---" for num in _numeric(table)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(f"**{t}**" if b else t for t, b in line) + " |" for line in body]
    return lines


def markdown(
    rows: list[Row],
    avg: dict[str, Any],
    title: str,
    settings: dict[str, Any],
    plots: dict[str, Path],
    out: Path,
    searches: list[SearchRecord] = (),
) -> str:
    parts = [f"# {title}", ""]
    for kind, value in document(rows, avg, settings, plots, searches):
        if kind == "h2":
            parts += [f"## {value}", ""]
        elif kind == "paras":
            parts += [*value, ""]
        elif kind == "table":
            parts += [*_md_table(value), ""]
        elif kind == "list":
            parts += [*(f"- {line}" for line in value), ""]
        else:
            key, path = value
            parts += [f"### {PLOT_TITLES.get(key, key)}", "", f"![{key}]({path.relative_to(out).as_posix()})", ""]
    return "\n".join(parts)


def _html_table(table: Table) -> str:
    header, body = table
    num = _numeric(table)

    def cls(i: int, best: bool = False) -> str:
        names = (["num"] if num[i] else []) + (["best"] if best else [])
        return f" class='{' '.join(names)}'" if names else ""

    head = "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(header))
    rows = "".join(
        "<tr>" + "".join(f"<td{cls(i, b)}>{html.escape(t)}</td>" for i, (t, b) in enumerate(line)) + "</tr>"
        for line in body
    )
    return f"<div class=wrap><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


STYLE = (
    ".wrap{overflow-x:auto}body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;white-space:nowrap}.num{text-align:right}th{background:#f3f3f3}"
    ".best{font-weight:bold;background:#e8f5e9}img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6}"
)


def _md_inline(s: str) -> str:
    """The markdown the sections use inline (**bold**, `code`) as HTML."""
    s = html.escape(s)
    for a, b in (("**", "b"), ("`", "code")):
        while a in s:
            s = s.replace(a, f"<{b}>", 1).replace(a, f"</{b}>", 1)
    return s


def html_page(
    rows: list[Row],
    avg: dict[str, Any],
    title: str,
    settings: dict[str, Any],
    plots: dict[str, Path],
    searches: list[SearchRecord] = (),
) -> str:
    """One self-contained HTML file: tables, plots as base64 PNG data URIs, settings."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
    ]
    for kind, value in document(rows, avg, settings, plots, searches):
        if kind == "h2":
            parts.append(f"<h2>{html.escape(value)}</h2>")
        elif kind == "paras":
            parts += [f"<p>{_md_inline(p)}</p>" for p in value]
        elif kind == "table":
            parts.append(_html_table(value))
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_md_inline(line)}</li>" for line in value) + "</ul>")
        else:
            key, path = value
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(
                f"<h3>{html.escape(PLOT_TITLES.get(key, key))}</h3><img alt='{key}' src='data:image/png;base64,{data}'>"
            )
    return "".join(parts) + "</body></html>\n"
