"""Separation speed and memory on the CPU: seconds per minute of 44.1 kHz stereo audio and peak RSS.

    python benchmarks/bench_separate.py                                   # the shipped model, a 3-minute song
    python benchmarks/bench_separate.py --checkpoint runs/a/checkpoints/last.pt --minutes 3,10 --json out.json

Each song (a generated 44.1 kHz stereo 16-bit WAV: tones, chords and noise bursts; what the model hears does
not change its speed) is separated by a fresh child process running what ``trackformer separate`` runs
(:func:`trackformer.separate.separate_file`: streamed 16-bit WAV stems, masks.png, separation.json), so its
peak resident memory (``ru_maxrss`` of that process, read at its end) is the whole cost of separating that song,
from Python's start to the last file. Reported per song: model load time, separation time, seconds per minute of
audio, real-time factor (audio seconds per second of work), CPU seconds per minute (what the separation costs
whatever else the machine runs: on an idle machine the wall time is at least that divided by the threads), peak
RSS. Targets on a 2-core CPU (issue 11 §5): ≥ 10× real time, peak RSS ≤ 1.5 GB for a 10-minute song.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import card_name, write_json  # noqa: E402

RATE = 44100
TARGET_SPEED = 10.0  # × real time
TARGET_RSS_GB = 1.5


def write_song(path: str, minutes: float, seed: int = 0) -> None:
    """A ``minutes``-long 44.1 kHz stereo 16-bit WAV of changing tones, chords and noise bursts, written in
    10-second blocks."""
    from trackformer.data.audio import AudioWriter

    rng = np.random.default_rng(seed)
    block = 10 * RATE
    total = round(minutes * 60 * RATE)
    with AudioWriter(path, RATE, 2) as writer:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / RATE
            x = np.zeros((2, n))
            for _ in range(4):
                f = 55.0 * 2 ** (rng.integers(0, 48) / 12)
                pan = rng.uniform(0.2, 0.8)
                tone = rng.uniform(0.03, 0.1) * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
                x += np.stack([pan * tone, (1 - pan) * tone])
            hits = rng.integers(0, n, size=20)
            noise = np.zeros(n)
            for h in hits:
                length = min(n - h, RATE // 20)
                noise[h:h + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / 400) * 0.2
            writer.write((x + noise).astype(np.float32))


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args) -> int:
    """Runs in the measured process: load the model, separate one song, print the times as JSON."""
    t0 = time.perf_counter()
    import torch

    from trackformer.pretrained import checkpoint_path
    from trackformer.separate import load_separator, resolve_window, separate_file

    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = load_separator(checkpoint_path(args.checkpoint), torch.device("cpu"))
    chunk, overlap = resolve_window(info, args.chunk_seconds, args.overlap)
    t1, cpu1 = time.perf_counter(), _cpu_seconds()
    separate_file(model, args.song, args.out, chunk_seconds=chunk, overlap_seconds=overlap, plot=not args.no_plot)
    t2, cpu2 = time.perf_counter(), _cpu_seconds()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB
    print(json.dumps(dict(load_s=t1 - t0, separate_s=t2 - t1, separate_cpu_s=cpu2 - cpu1, peak_rss_gb=peak_gb,
                          chunk_seconds=chunk, overlap_seconds=overlap, threads=torch.get_num_threads(),
                          model=info.get("name"), model_config=info.get("model_config"),
                          model_sample_rate=info.get("sample_rate"))))
    return 0


def measure(args, minutes: float, folder: str) -> dict:
    """Generates the song, separates it in a child process; the row of results."""
    song = os.path.join(folder, f"song_{minutes:g}min.wav")
    write_song(song, minutes)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--song", song, "--out", os.path.join(folder, "out"),
           "--checkpoint", args.checkpoint] + (["--threads", str(args.threads)] if args.threads else [])
    cmd += (["--chunk-seconds", str(args.chunk_seconds)] if args.chunk_seconds else []) + (
        ["--overlap", str(args.overlap)] if args.overlap else []) + (["--no-plot"] if args.no_plot else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"separating the {minutes:g}-minute song failed:\n{done.stderr.strip()}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    os.remove(song)
    return dict(minutes=minutes, **times, seconds_per_minute=times["separate_s"] / minutes,
                realtime_factor=minutes * 60 / times["separate_s"],
                cpu_seconds_per_minute=times["separate_cpu_s"] / minutes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="default", help="shipped model name or checkpoint path (default: default)")
    p.add_argument("--minutes", default="3", help="comma-separated song lengths in minutes (default 3; the issue's "
                                                  "targets: 3,10)")
    p.add_argument("--chunk-seconds", type=float, default=None, help="window (default: the training segment)")
    p.add_argument("--overlap", type=float, default=None, help="overlap fraction (default: separate's, 0.5)")
    p.add_argument("--no-plot", action="store_true", help="as `separate --no-plot`: no picture, no mask statistics")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--song", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    from trackformer.pretrained import checkpoint_path

    checkpoint_path(args.checkpoint)  # a clear error before generating audio
    result = dict(card=card_name("cpu"), checkpoint=args.checkpoint, plot=not args.no_plot, rows=[])
    with tempfile.TemporaryDirectory(prefix="bench_separate_") as folder:
        for minutes in [float(m) for m in args.minutes.split(",")]:
            row = measure(args, minutes, folder)
            result["rows"].append(row)
            speed_ok = "ok" if row["realtime_factor"] >= TARGET_SPEED else "BELOW TARGET"
            rss_ok = "ok" if row["peak_rss_gb"] <= TARGET_RSS_GB else "ABOVE TARGET"
            print(f"{minutes:g} min 44.1 kHz stereo: {row['separate_s']:.1f} s to separate "
                  f"({row['seconds_per_minute']:.2f} s per minute, {row['realtime_factor']:.1f}x real time, target "
                  f"{TARGET_SPEED:g}x: {speed_ok}); peak RSS {row['peak_rss_gb']:.2f} GB (target "
                  f"{TARGET_RSS_GB} GB: {rss_ok}); model load {row['load_s']:.1f} s; window "
                  f"{row['chunk_seconds']:g} s, overlap {row['overlap_seconds']:g} s, {row['threads']} threads; "
                  f"{row['cpu_seconds_per_minute']:.1f} CPU-s per minute (on a busy machine, wall time ≥ that / "
                  f"{row['threads']} when idle)", flush=True)
            if args.json:
                write_json(args.json, result)
    print(result["card"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
