"""Load on ``peftkit serve`` vs a hand-written FastAPI + transformers-pipeline peer, and serving memory.

Run (a benchmark, not a test; numbers go into docs/serving.md):

    nice -n 10 python benchmarks/serve_load.py RUN_DIR --texts ../shared/data/clue/tnews/dev.json \\
        --concurrency 1,8,32 --seconds 15 --threads 1
    nice -n 10 python benchmarks/serve_load.py RUN_DIR --memory
    nice -n 10 python benchmarks/serve_load.py RUN_DIR --precisions float32,bfloat16,int8

Both servers run on 127.0.0.1 at once, on the same exported model, their windows interleaved; a closed-loop asyncio client
keeps ``concurrency`` requests of one text each in flight for ``seconds`` and records every latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start a server and wait until GET /ready answers 200 (5 minutes at most)."""
    out = open(log or os.devnull, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}): {' '.join(cmd)}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server not ready in 300 s: {' '.join(cmd)}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(url: str, texts: list[str], concurrency: int, seconds: float, model: str) -> dict[str, float]:
    """Closed loop: ``concurrency`` clients, each sending one text and waiting for the answer, for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/classify", json={"model": model, "input": texts[i % len(texts)]})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        for t in texts[:concurrency]:  # warm-up (first-call costs) before the clock starts
            await c.post("/v1/classify", json={"model": model, "input": t})
        stop_at = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies or [float("nan")]) * 1000
    return {
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "errors": errors,
        "n": len(latencies),
    }


def threads_env(threads: int) -> dict[str, str]:
    """OMP_NUM_THREADS for a server (0: unset, each library's own default)."""
    return {"OMP_NUM_THREADS": str(threads)} if threads else {}


def text_of(row: dict) -> str:
    """The text of a CLUE / own-data JSON row."""
    return row.get("sentence") or row.get("text") or row.get("sentence1")


def read_rows(path: Path, n: int) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[:n]]


def read_texts(path: Path, n: int = 2000) -> list[str]:
    return [text_of(r) for r in read_rows(path, n)]


def export(run: Path, out: Path, *extra: str) -> Path:
    if not (out / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "peftkit", "export", str(run), "--out", str(out), *extra], check=True)
    return out


def speed(args: argparse.Namespace, work: Path) -> None:
    texts = read_texts(Path(args.texts))
    exp = export(args.run, work / "export")
    levels = [int(x) for x in args.concurrency.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {}
    targets = {
        "peftkit serve": lambda port: [
            sys.executable,
            "-m",
            "peftkit",
            "serve",
            f"m={args.run}",
            "--port",
            str(port),
            "--max-wait-ms",
            str(args.max_wait_ms),
            "--parallel",
            str(args.parallel),
        ],
        "peer (FastAPI + pipeline)": lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.serve_peer:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],  # fmt: skip
    }
    # both servers up at once and their windows interleaved (ours, peer, ours, peer, ...): a slower or faster
    # moment of a shared machine then falls on both sides, not on whichever ran second
    procs, ports = {}, {}
    try:
        for name, cmd in targets.items():
            ports[name] = port = free_port()
            env = {"PEER_MODEL": str(exp), **threads_env(args.threads)}  # the same torch threads for both
            procs[name] = start(cmd(port), port, env=env, log=work / f"{name.split()[0]}.log")
        for c in levels:
            windows: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for _ in range(args.repeat):
                for name in targets:
                    windows[name].append(
                        asyncio.run(load(f"http://127.0.0.1:{ports[name]}", texts, c, args.seconds, "m"))
                    )
            pairs = [a["rps"] / b["rps"] for a, b in zip(*windows.values())]
            for name, ws in windows.items():
                # the window with the median throughput (its own latencies), so one noisy window does not decide
                results.setdefault(name, {})[c] = r = sorted(ws, key=lambda w: w["rps"])[len(ws) // 2]
                r["all_rps"] = [w["rps"] for w in ws]
                print(f"{name:28s} c={c:<3d} {r['rps']:7.1f} req/s  p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  "
                      f"p99 {r['p99']:7.1f} ms  errors {r['errors']}  windows {[round(x, 1) for x in r['all_rps']]}", flush=True)  # fmt: skip
            print(f"{'window pairs, ours / peer':28s} c={c:<3d} {[round(x, 2) for x in pairs]}", flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    ours, peer = results["peftkit serve"], results["peer (FastAPI + pipeline)"]
    print(
        "\n| concurrency | peftkit req/s | peer req/s | ratio | peftkit p50/p95/p99 ms | peer p50/p95/p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in levels:
        a, b = ours[c], peer[c]
        print(f"| {c} | {a['rps']:.1f} | {b['rps']:.1f} | {a['rps'] / b['rps']:.2f}x | "
              f"{a['p50']:.0f} / {a['p95']:.0f} / {a['p99']:.0f} | {b['p50']:.0f} / {b['p95']:.0f} / {b['p99']:.0f} | "
              f"{a['errors']} / {b['errors']} |")  # fmt: skip


def rss_of(proc: subprocess.Popen) -> float:
    import psutil

    p = psutil.Process(proc.pid)
    return (p.memory_info().rss + sum(ch.memory_info().rss for ch in p.children(recursive=True))) / 2**20


def memory(args: argparse.Namespace, work: Path) -> None:
    """Resident memory after /ready: 1 adapter, 5 adapters on one base, 5 merged models."""
    runs = []
    for i in range(5):  # five runs' adapters (copies of one run: the same sizes as five distinct adapters)
        dst = work / f"run{i}"
        if not dst.exists():
            shutil.copytree(args.run, dst, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
        runs.append(dst)
    exports = [export(r, work / f"export{i}") for i, r in enumerate(runs)]
    setups = {
        "1 run (adapter merged)": [f"r0={runs[0]}"],
        "1 adapter, unmerged": [f"r0={runs[0]}", "--no-merge"],
        "5 adapters on one base": [f"r{i}={r}" for i, r in enumerate(runs)],
        "5 merged models (exports)": [f"e{i}={e}" for i, e in enumerate(exports)],
    }
    print("\n| served | RSS after /ready (MiB) |\n|---|---|")
    for name, models in setups.items():
        port = free_port()
        proc = start(
            [sys.executable, "-m", "peftkit", "serve", *models, "--port", str(port)], port, log=work / "mem.log"
        )
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"model": models[0].split("=")[0], "input": "你好"})
            print(f"| {name} | {rss_of(proc):.0f} |", flush=True)
        finally:
            stop(proc)


def dev_accuracy(url: str, rows: list[dict], model: str, field: str, batch: int = 32) -> float:
    """Accuracy over ``rows`` through /v1/classify (``batch`` texts a request), gold label in ``rows[i][field]``."""
    right = 0
    with httpx.Client(base_url=url, timeout=120) as c:
        for i in range(0, len(rows), batch):
            part = rows[i : i + batch]
            r = c.post("/v1/classify", json={"model": model, "input": [text_of(row) for row in part]})
            r.raise_for_status()
            right += sum(str(p["label"]) == str(row[field]) for p, row in zip(r.json()["data"], part))
    return right / len(rows)


def precisions(args: argparse.Namespace, work: Path) -> None:
    """Each --precision of the served run: dev accuracy over HTTP, then closed-loop throughput."""
    rows = read_rows(Path(args.texts), args.eval_rows)
    texts = [text_of(r) for r in rows]
    levels = [int(x) for x in args.concurrency.split(",")]
    table = []
    for prec in args.precisions.split(","):
        port = free_port()
        cmd = [sys.executable, "-m", "peftkit", "serve", f"m={args.run}", "--port", str(port), "--precision", prec,
               "--max-wait-ms", str(args.max_wait_ms), "--parallel", str(args.parallel)]  # fmt: skip
        proc = start(cmd, port, env=threads_env(args.threads), log=work / f"serve-{prec}.log")
        try:
            url = f"http://127.0.0.1:{port}"
            acc = dev_accuracy(url, rows, "m", args.label_field)
            speeds = [asyncio.run(load(url, texts, c, args.seconds, "m")) for c in levels]
            table.append((prec, acc, speeds, rss_of(proc)))
            print(prec, f"acc {acc:.4f}", *(f"c={c} {r['rps']:.1f} req/s p99 {r['p99']:.0f} ms" for c, r in zip(levels, speeds)),
                  flush=True)  # fmt: skip
        finally:
            stop(proc)
    base = table[0]
    head = " | ".join(f"req/s c={c} (× {base[0]})" for c in levels)
    print(f"\n| precision | dev accuracy ({len(rows)} rows) | {head} | p99 ms at c={levels[-1]} | RSS MiB |")
    print("|---|---:|" + "---:|" * len(levels) + "---:|---:|")
    for prec, acc, speeds, rss in table:
        cells = " | ".join(f"{r['rps']:.1f} ({r['rps'] / b['rps']:.2f}×)" for r, b in zip(speeds, base[2]))
        print(f"| {prec} | {acc * 100:.2f} | {cells} | {speeds[-1]['p99']:.0f} | {rss:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished peftkit run (adapter-based, e.g. LoRA)")
    ap.add_argument("--texts", default=str(REPO.parent / "shared/data/clue/tnews/dev.json"), help="JSON-lines texts")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    ap.add_argument("--repeat", type=int, default=1, help="windows per level; the median window is reported")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument(
        "--threads", type=int, default=1,
        help="OMP_NUM_THREADS for both servers (0 = unset: torch's default; on a busy shared CPU, 2 threads spin-wait: 1 s per forward instead of 60 ms)",
    )  # fmt: skip
    ap.add_argument("--parallel", type=int, default=1, help="peftkit serve --parallel")
    ap.add_argument("--memory", action="store_true", help="measure RSS for 1 vs 5 adapters vs 5 merged instead")
    ap.add_argument("--precisions", help="e.g. float32,bfloat16,int8: dev accuracy and throughput of each instead")
    ap.add_argument("--eval-rows", type=int, default=1000, help="dev rows for --precisions' accuracy")
    ap.add_argument("--label-field", default="label", help="gold label's field in --texts rows")
    ap.add_argument("--work", type=Path, help="folder for exports and logs (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="peftkit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (memory if args.memory else precisions if args.precisions else speed)(args, work)


if __name__ == "__main__":
    main()
