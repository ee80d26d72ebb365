"""Soak: ``peftkit serve`` under steady closed-loop load for minutes; errors, throughput and memory over time.

Run (a benchmark, not a test; numbers go into docs/serving.md):

    nice -n 5 python benchmarks/serve_soak.py RUN_DIR --minutes 4 --concurrency 16

The server runs on 127.0.0.1; ``concurrency`` clients each keep one request in flight. Every ``--every``
seconds it prints requests/s, p99 latency, errors and the server's resident memory (all its processes), so a
leak shows as a rising RSS column and an overload as errors or a growing p99. The last line compares the
RSS of the final window with the first one after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
from serve_load import REPO, free_port, load, read_texts, rss_of, start, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished peftkit run or export folder")
    ap.add_argument("--texts", default=str(REPO.parent / "shared/data/clue/tnews/dev.json"), help="JSON-lines texts")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=20.0, help="seconds per reported window")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--serve-args", default="--threads 1", help="extra `peftkit serve` arguments")
    args = ap.parse_args()
    texts = read_texts(Path(args.texts))
    port = free_port()
    cmd = [sys.executable, "-m", "peftkit", "serve", f"m={args.run}", "--port", str(port), *args.serve_args.split()]
    proc = start(cmd, port, env={"OMP_NUM_THREADS": "1"}, log=Path("/tmp/peftkit-soak.log"))
    rows = []
    try:
        t_end = time.monotonic() + args.minutes * 60
        print("| minute | req/s | p50 ms | p99 ms | errors | RSS MiB |\n|---|---|---|---|---|---|", flush=True)
        while time.monotonic() < t_end:
            r = asyncio.run(load(f"http://127.0.0.1:{port}", texts, args.concurrency, args.every, "m"))
            r["rss"] = rss_of(proc)
            r["t"] = args.minutes - (t_end - time.monotonic()) / 60
            rows.append(r)
            print(f"| {r['t']:.1f} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['errors']} | "
                  f"{r['rss']:.0f} |", flush=True)  # fmt: skip
    finally:
        stop(proc)
    total = sum(r["n"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    rss = np.array([r["rss"] for r in rows])
    print(
        f"\n{total} requests, {errors} errors over {args.minutes:g} min at concurrency {args.concurrency}; "
        f"RSS first window {rss[0]:.0f} MiB, last {rss[-1]:.0f} MiB, max {rss.max():.0f} MiB "
        f"({rss[-1] - rss[0]:+.0f} MiB)"
    )


if __name__ == "__main__":
    main()
