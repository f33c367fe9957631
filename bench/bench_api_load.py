"""Benchmark: POST /predict under concurrent load on a real uvicorn (loopback), latency and requests/s.

    .venv/bin/python bench/bench_api_load.py --export /tmp/bp-export --requests 400 --concurrency 8

Starts `create_app(Predictor.from_export(EXPORT))` under uvicorn in a child process on a free
127.0.0.1 port (models preloaded; `instropitch.devstack.http_server.running_app`, as the load
test does), warms it up (4 x concurrency requests), then sends `--requests` POST /predict with
`--concurrency` threads (httpx, one pooled client), mixing the same kinds as
`tests/serving/test_api_load.py`: good WAVs (`--seconds` long synthetic notes), uploads over
`--max-upload-bytes` (413), non-WAVs (415), empty and silent WAVs (422). Reports p50/p95/p99
latency per kind and overall, requests/s, the status counts, any 5xx or unexpected status, the
server's RSS before/after, and the load average. `--json FILE` writes the figures.
`--export` is a folder from `Predictor.export` (e.g. `bench/bench_predict.py --keep-export DIR`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from instropitch import audio
from instropitch.devstack.http_server import EXPORT_APP, models_loaded, running_app

SR = 22050


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def note(midi: int, seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * n * f0 * t + rng.uniform(0, 6.28)) / n for n in range(1, 8) if n * f0 < SR / 2)
    y = y * np.minimum(1, t / 0.02) * np.minimum(1, (seconds - t) / 0.05)
    buf = io.BytesIO()
    audio.write_wav(buf, (0.5 * y / np.abs(y).max()).astype(np.float32), SR)
    return buf.getvalue()


def request_mix(n: int, max_upload_bytes: int, seconds: float) -> list[tuple[str, tuple, int]]:
    good = [note(midi, seconds, seed) for seed, midi in enumerate((60, 64, 69))]
    silent = io.BytesIO()
    audio.write_wav(silent, np.zeros(SR, dtype=np.float32), SR)
    kinds = [
        ("good", None, 200),
        ("good", None, 200),
        ("oversized", ("big.wav", bytes(max_upload_bytes + 200_000), "audio/wav"), 413),
        ("good", None, 200),
        ("not-wav", ("notes.txt", b"just text, not audio " * 50, "text/plain"), 415),
        ("empty", ("empty.wav", b"", "audio/wav"), 422),
        ("silent", ("silent.wav", silent.getvalue(), "audio/wav"), 422),
    ]
    out = []
    for i in range(n):
        kind, file, status = kinds[i % len(kinds)]
        out.append((kind, file or (f"note{i}.wav", good[i % len(good)], "audio/wav"), status))
    return out


def run_load(url: str, mix: list, concurrency: int) -> tuple[list[tuple[str, int, int, float]], float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as http:

        def one(item):
            kind, file, expected = item
            started = time.perf_counter()
            r = http.post("/predict", files={"file": file})
            r.json()
            return kind, expected, r.status_code, time.perf_counter() - started

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, mix))
        return results, time.perf_counter() - started


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="a Predictor.export folder")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the good WAVs")
    parser.add_argument("--max-upload-bytes", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    figures: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "python": sys.version.split()[0],
        "args": {k: str(v) for k, v in vars(args).items()},
        "load_before": load_average(),
    }
    mix = request_mix(args.requests, args.max_upload_bytes, args.seconds)
    server = running_app(EXPORT_APP, str(args.export), str(args.max_upload_bytes), ready=models_loaded, timeout=120)
    with server as (url, _port, pid):
        run_load(url, request_mix(4 * args.concurrency, args.max_upload_bytes, args.seconds), args.concurrency)
        time.sleep(1)
        rss_before = psutil.Process(pid).memory_info().rss / 2**20
        results, wall = run_load(url, mix, args.concurrency)
        rss_after = psutil.Process(pid).memory_info().rss / 2**20
        time.sleep(2)
        rss_settled = psutil.Process(pid).memory_info().rss / 2**20

    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, _, _, elapsed in results:
        by_kind[kind].append(elapsed)
    figures.update(
        requests=len(results),
        concurrency=args.concurrency,
        wall_s=round(wall, 2),
        requests_per_s=round(len(results) / wall, 1),
        good_per_s=round(len(by_kind["good"]) / wall, 1),
        overall=percentiles([r[3] for r in results]),
        by_kind={kind: percentiles(v) for kind, v in by_kind.items()},
        statuses=dict(Counter(str(r[2]) for r in results)),
        server_5xx=sum(1 for r in results if r[2] >= 500),
        unexpected=sum(1 for r in results if r[2] != r[1]),
        server_rss_mb={"before": round(rss_before), "after_load": round(rss_after), "after_2s": round(rss_settled)},
        load_after=load_average(),
    )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if figures["server_5xx"] or figures["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
