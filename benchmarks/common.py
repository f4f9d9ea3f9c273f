"""Timing, memory and row-recording helpers shared by every benchmark (GPU report and CPU regression checks).

Times are medians in milliseconds; on CUDA they are measured with CUDA events after warm-up, on the CPU with
``time.perf_counter``. Peak memory is the extra CUDA memory allocated during one call beyond what was allocated
before it (MiB); on the CPU it is not measured (``None``).
"""

import argparse
import json
import math
import os
import statistics
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLDS = os.path.join(HERE, "thresholds.json")


def time_ms(fn, device, *, warmup: int = 2, reps: int = 7) -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def interleaved_min_ms(fns, reps: int) -> list[float]:
    """Fastest of ``reps`` CPU runs of each fn (ms), alternating between them, so load from other processes on a
    shared machine slows every side alike (the minimum is the least disturbed sample). For same-run ratios."""
    best = [math.inf] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], (time.perf_counter() - t0) * 1e3)
    return best


def peak_extra_mib(fn, device) -> float | None:
    """Extra CUDA memory (MiB) allocated at the peak of one ``fn()`` call beyond the memory held before it."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def card_name(device) -> str:
    """The device's name as reports print it ("NVIDIA H200", or the CPU's model name)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def load_threshold(key: str) -> float:
    """The committed minimum speed-up for regression check ``key`` (benchmarks/thresholds.json)."""
    with open(THRESHOLDS) as f:
        return float(json.load(f)[key])


def check_ratio(benchmark, key: str, reference_ms: float, fast_ms: float) -> float:
    """Records reference/fast in the pytest-benchmark JSON and fails if it is below the committed threshold.

    ``benchmark`` is the pytest-benchmark fixture (its ``extra_info`` ends up in --benchmark-json output).
    """
    ratio = reference_ms / fast_ms
    threshold = load_threshold(key)
    benchmark.extra_info.update(key=key, reference_ms=reference_ms, fast_ms=fast_ms, ratio=ratio,
                                threshold=threshold)
    assert ratio >= threshold, (f"{key}: fast path is only {ratio:.2f}x faster than its reference "
                                f"({fast_ms:.2f} ms vs {reference_ms:.2f} ms); threshold {threshold}x")
    return ratio


def write_json(path: str, payload) -> None:
    """Writes ``payload`` as indented JSON, atomically (temp file + rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def suite_parser(description: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every GPU-suite script takes (``--device --quick --json --warmup --reps``); scripts add theirs.
    ``--warmup``/``--reps`` default to None so each script picks its own quick/full defaults."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", help="write the results here (after every row)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--reps", type=int, default=None)
    return p


def suite_exit_code(result: dict) -> int:
    """A suite script's exit status: 1 when one of our rows failed with an error, else 0. A baseline's error stays
    in its row (and the report's "Not measured" list) without failing the suite: the run measures our kernels."""
    return 1 if any(r.get("ours") and r["status"] == "error" for r in result["rows"]) else 0


def row_line(row: dict, case_keys, metrics) -> str:
    """The printed line of one suite row: impl, the case (each of ``case_keys`` the row has), then for a row that
    ran each of ``metrics`` ((key, format) pairs such as ``("ms", "{:.3f} ms")``) it has, else its status and why."""
    case = " ".join(f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in case_keys if k in row)
    head = f"{row['impl']:>26}  {case}"
    if row.get("status") != "ok":
        return f"{head}  {row.get('status')}: {row.get('note') or row.get('error') or ''}".rstrip()
    values = "  ".join(fmt.format(row[k]) for k, fmt in metrics if row.get(k) is not None)
    return f"{head}  {values}" + (f"  ({row['note']})" if row.get("note") else "")


def record_row(result: dict, row: dict, json_path: str | None, case_keys, metrics) -> None:
    """Tags ``row`` with the card, appends it to ``result["rows"]``, prints :func:`row_line` and rewrites the
    suite JSON when ``json_path`` is given (so a suite cut off by a timeout keeps what it measured)."""
    row["card"] = result["card"]
    result["rows"].append(row)
    print(row_line(row, case_keys, metrics), flush=True)
    if json_path:
        write_json(json_path, result)
