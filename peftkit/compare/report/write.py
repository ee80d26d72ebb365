"""Writing a report: the finished runs under some folders read, summarised, and written out as report.md,
report.csv, report.json, report.html and plots/ (the one module that knows all the report's parts)."""

from __future__ import annotations

import logging
from pathlib import Path

from peftkit import run_dir as outputs
from peftkit.compare.report import plots as report_plots
from peftkit.compare.report.pages import html_page, markdown
from peftkit.compare.report.runs import load_runs, load_searches, search_folders
from peftkit.compare.report.settings import settings_of
from peftkit.compare.report.tables import clue_average, csv_text, report_json, summarize

log = logging.getLogger("peftkit")


def write_report(
    paths: list[str | Path],
    out_dir: str | Path,
    *,
    title: str = "peftkit comparison",
    metric: str | None = None,
    split: str = "dev",
    searches: list[Path] | None = None,
) -> Path:
    """Build the report of the runs under ``paths`` into ``out_dir``; returns ``out_dir``. ``split`` is what the
    tables compare: ``dev`` (each run's saved best checkpoint on dev) or ``test`` (that checkpoint on a labelled
    test split, for runs that scored one). ``searches``: folders holding a grid's search trials (default: the
    ``_search`` folder of each of ``paths`` that has one)."""
    runs = load_runs(paths, split)
    rows = summarize(runs, metric)
    avg = clue_average(rows)
    found = load_searches(searches if searches is not None else search_folders(paths))
    settings = {**settings_of(runs), "split": split}
    out = Path(out_dir)
    plots = report_plots.draw_all(runs, rows, avg, out / "plots", split, found)
    outputs.atomic_write(out / "report.md", markdown(rows, avg, title, settings, plots, out, found))
    outputs.atomic_write(out / "report.csv", csv_text(rows))
    outputs.write_json(out / "report.json", report_json(rows, avg, title, settings, found))
    outputs.atomic_write(out / "report.html", html_page(rows, avg, title, settings, plots, found))
    log.info(
        "report of %d runs (%d tasks × %d methods) written to %s",
        len(runs),
        len({r.task for r in rows}),
        len({r.method for r in rows}),
        out,
    )
    return out
