"""Check the playground page at ``/`` in a real Chromium engine, and take the screenshot docs/serving.md shows.

Chromium here is Qt WebEngine (Chromium's content layer, run headless on Qt's offscreen platform): it
installs from PyPI (``pip install PyQt6-WebEngine``, ~300 MB), while Playwright's and Puppeteer's browser
downloads need a CDN this project's machines cannot reach. A scripted check, not a test: the browser is
too large for the test extra.

    pip install PyQt6-WebEngine
    python benchmarks/playground_check.py RUN_DIR [RUN_DIR ...] --text "..." --out docs/assets/serving/playground.png \\
        --font NotoSansCJKsc-Regular.otf     # only where the machine has no CJK font (pip's mplfonts ships one)

It starts ``peftkit serve`` on 127.0.0.1, loads ``/``, waits for the model list, picks the last model,
types the text, clicks Classify, waits for the table, and checks that every label and percentage shown
(to the page's 3 decimals) equals what ``POST /v1/classify`` answers for the same text; exit status 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start, stop  # noqa: E402

READ_TABLE = """JSON.stringify([...document.querySelectorAll('#out tr')].map(
    tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim())))"""


def browse(
    url: str, model: str, text: str, shot: Path, font: Path | None = None, timeout: float = 60.0
) -> list[list[str]]:
    """Drive the page in Qt WebEngine; return the result table's cells; save a screenshot."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox --disable-gpu")
    from PyQt6.QtCore import QEventLoop, QTimer, QUrl
    from PyQt6.QtWebEngineWidgets import QWebEngineView
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    view = QWebEngineView()
    if font is not None:  # a machine without CJK fonts draws Chinese as boxes; a user's browser has its own
        from PyQt6.QtGui import QFontDatabase
        from PyQt6.QtWebEngineCore import QWebEngineSettings

        families = QFontDatabase.applicationFontFamilies(QFontDatabase.addApplicationFont(str(font)))
        if not families:
            raise SystemExit(f"playground: --font {font}: not a font file Qt can read")
        for which in (QWebEngineSettings.FontFamily.StandardFont, QWebEngineSettings.FontFamily.SansSerifFont):
            view.settings().setFontFamily(which, families[0])
    view.resize(900, 640)

    def js(code: str):
        loop, box = QEventLoop(), {}

        def done(value):
            box["v"] = value
            loop.quit()

        view.page().runJavaScript(code, done)
        QTimer.singleShot(10_000, loop.quit)
        loop.exec()
        return box.get("v")

    def wait_for(code: str, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = js(code)
            if value:
                return value
            loop = QEventLoop()
            QTimer.singleShot(200, loop.quit)
            loop.exec()
        raise SystemExit(f"playground: {what} did not appear within {timeout:.0f} s")

    loaded = QEventLoop()
    view.loadFinished.connect(lambda ok: loaded.quit())
    view.load(QUrl(url + "/"))
    view.show()
    loaded.exec()
    wait_for(
        f"[...document.querySelectorAll('#model option')].some(o => o.value === {json.dumps(model)})", "the model list"
    )
    js(f"document.getElementById('model').value = {json.dumps(model)}; "
       f"document.getElementById('text').value = {json.dumps(text)}; document.getElementById('go').click(); true")  # fmt: skip
    rows = json.loads(wait_for(f"document.querySelectorAll('#out tr').length > 0 && {READ_TABLE}", "the result table"))
    settle = QEventLoop()
    QTimer.singleShot(500, settle.quit)  # let the bars paint
    settle.exec()
    shot.parent.mkdir(parents=True, exist_ok=True)
    if not view.grab().save(str(shot)):
        raise SystemExit(f"playground: could not write {shot}")
    view.close()
    app.processEvents()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="[NAME=]RUN_OR_EXPORT, as for peftkit serve")
    ap.add_argument("--text", default="央行宣布下调存款准备金率0.5个百分点", help="what to type into the page")
    ap.add_argument("--font", type=Path, help="a CJK font file for the screenshot (e.g. Noto Sans CJK SC)")
    ap.add_argument("--out", type=Path, default=Path("docs/assets/serving/playground.png"), help="screenshot file")
    args = ap.parse_args()
    port = free_port()
    proc = start([sys.executable, "-m", "peftkit", "serve", *args.models, "--port", str(port)], port)
    try:
        url = f"http://127.0.0.1:{port}"
        entry = httpx.get(url + "/v1/models").json()["data"][-1]
        model = entry["id"]
        want = httpx.post(url + "/v1/classify", json={"model": model, "input": args.text}).json()["data"][0]
        rows = browse(url, model, args.text, args.out, args.font)
    finally:
        stop(proc)
    shown = {r[0]: r[1] for r in rows if len(r) >= 2}
    expected = {label: f"{p:.3f}" for label, p in zip(entry["labels"], want["probs"])}
    print(f"page shows {len(shown)} labels for model {model!r}; top: {rows[0]}")
    bad = {k: (shown.get(k), v) for k, v in expected.items() if shown.get(k) != v}
    if bad:
        print(f"MISMATCH page vs /v1/classify (shown, expected): {bad}")
        raise SystemExit(1)
    print(f"every label and percentage matches /v1/classify; screenshot: {args.out}")


if __name__ == "__main__":
    main()
