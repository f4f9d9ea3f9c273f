"""Data pipeline throughput: chorale rendering, MixIT-pair loading, synthetic music, partial reads (CPU).

Figures (script mode):
  render            render_chorales with 2 workers at 44.1 kHz: seconds of 4-stem audio per wall second
  loader_30s        MixitPairs 30 s stereo 44.1 kHz segments from the rendered set, 2 workers, batch 4:
                    segments/s (each example holds two segments)
  train_10s         the same with 10 s segments: training examples/s (the bar: >= 10/s on a 2-core machine),
                    and CPU-ms per example in one process (load-independent), also at 16 kHz from the 44.1 kHz files
  synth_10s_16k     SyntheticMusic: ms to generate 10 s of 4-stem stereo audio at 16 kHz (bar: well under 100)
  segment_read      read_audio of a 3 s segment of a 60 s 44.1 kHz stereo WAV vs reading the file whole (and of
                    a 48 kHz file, resampled on read)

Script:  python benchmarks/bench_data.py [--quick] [--data DIR] [--json OUT.json]
         (--data keeps the rendered chorales in DIR and reuses them on the next run; default: a temp folder)
pytest:  test_* functions are CPU regression checks (make bench-check), ratios against committed thresholds.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch
from common import card_name, check_ratio, time_ms, write_json

from trackformer.data import MixitPairs, MoisesDB, SyntheticMusic, make_loader, read_audio, render_chorales


def _wav(path, seconds, sr):
    x = (np.random.default_rng(0).standard_normal((round(seconds * sr), 2)) * 0.1).astype(np.float32)
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def segment_read_ms(folder, sr_file=44100):
    """(ms to read a 3 s segment at 44.1 kHz, ms to read the whole 60 s file and slice it)."""
    path = _wav(os.path.join(folder, f"long{sr_file}.wav"), 60, sr_file)
    start = 25 * 44100
    seg = time_ms(lambda: read_audio(path, start=start, frames=3 * 44100, sample_rate=44100), "cpu", reps=9)
    full = time_ms(lambda: read_audio(path, sample_rate=44100)[:, start:start + 3 * 44100], "cpu", reps=3)
    return seg, full


def synth_ms(seconds=10.0, sr=16000):
    song = SyntheticMusic(1, seconds=seconds, sample_rate=sr, seed=0)[0]
    return time_ms(song.load_stems, "cpu", warmup=1, reps=5)


def loader_rate(songs, segment_seconds, examples, workers=2, batch_size=4):
    """Training examples per second through make_loader (worker start-up excluded: the first batch is warm-up)."""
    ds = MixitPairs(songs, segment_seconds=segment_seconds, sample_rate=44100, examples_per_epoch=examples + batch_size,
                    seed=0)
    it = iter(make_loader(ds, batch_size=batch_size, workers=workers, seed=0))
    next(it)
    t0 = time.perf_counter()
    n = sum(b["x1"].shape[0] for b in it)
    return n / (time.perf_counter() - t0)


def cpu_ms_per_example(songs, segment_seconds, n=12, batch_size=4, sample_rate=44100):
    """CPU time (ms, this process, one thread) per training example through make_loader(workers=0), collation
    included: load-independent, unlike wall time on a shared machine (it leaves out the workers' IPC)."""
    ds = MixitPairs(songs, segment_seconds=segment_seconds, sample_rate=sample_rate,
                    examples_per_epoch=n + batch_size, seed=0)
    it = iter(make_loader(ds, batch_size=batch_size, workers=0, seed=0))
    next(it)  # warm-up: page cache, imports
    t0 = time.process_time()
    count = sum(b["x1"].shape[0] for b in it)
    return (time.process_time() - t0) / count * 1e3


def synth_cpu_ms(seconds=10.0, sr=16000, reps=5):
    song = SyntheticMusic(1, seconds=seconds, sample_rate=sr, seed=0)[0]
    song.load_stems(0, 1)
    t0 = time.process_time()
    for _ in range(reps):
        song.load_stems()
    return (time.process_time() - t0) / reps * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 chorales and fewer examples")
    ap.add_argument("--data", default=None, help="folder for the rendered chorales (kept; reused when present)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cpu", help="accepted for run_all.py; the data pipeline runs on the CPU")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as in loader workers; numbers would otherwise depend on thread contention
    n_songs, examples = (4, 24) if args.quick else (8, 80)
    rows = {"card": card_name("cpu"), "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.data or os.path.join(tmp, "chorales")
        r = render_chorales(out, n=n_songs, sample_rate=44100, workers=2, progress=False)
        if r["rendered"]:
            rows["render"] = {"songs": r["rendered"], "audio_s": r["audio_seconds"], "wall_s": r["wall_seconds"],
                              "audio_s_per_wall_s": r["audio_seconds"] / r["wall_seconds"]}
            print(f"render: {r['rendered']} chorales, {r['audio_seconds']:.0f} s of 4-stem 44.1 kHz audio in "
                  f"{r['wall_seconds']:.1f} s = {rows['render']['audio_s_per_wall_s']:.1f} s/s (2 workers)")
        else:
            print(f"render: {r['existing']} chorales already in {out}; not timed")
        songs = MoisesDB(out).songs
        rate30 = loader_rate(songs, 30.0, examples // 2)
        cpu30 = cpu_ms_per_example(songs, 30.0)
        rows["loader_30s"] = {"examples_per_s": rate30, "segments_per_s": 2 * rate30, "cpu_ms_per_example": cpu30}
        print(f"loader 30 s stereo 44.1 kHz, 2 workers: {2 * rate30:.1f} segments/s ({rate30:.1f} pairs/s); "
              f"{cpu30:.0f} CPU-ms per pair")
        rate10 = loader_rate(songs, 10.0, examples)
        cpu10 = cpu_ms_per_example(songs, 10.0)
        rows["train_10s"] = {"examples_per_s": rate10, "bar": 10.0, "ok": rate10 >= 10.0, "cpu_ms_per_example": cpu10}
        print(f"training examples 10 s stereo 44.1 kHz, 2 workers: {rate10:.1f} examples/s (bar >= 10/s: "
              f"{'ok' if rate10 >= 10 else 'BELOW'}); {cpu10:.0f} CPU-ms per example = {2000 / cpu10:.0f}/s on "
              "2 idle cores")
        cpu16 = cpu_ms_per_example(MoisesDB(out, sample_rate=16000).songs, 10.0, sample_rate=16000)
        rows["train_10s_16k_from_44k"] = {"cpu_ms_per_example": cpu16}
        print(f"training examples 10 s stereo at 16 kHz from the 44.1 kHz files (resampled on read): {cpu16:.0f} "
              "CPU-ms per example")
        ms, cpu_ms = synth_ms(), synth_cpu_ms()
        rows["synth_10s_16k"] = {"ms": ms, "cpu_ms": cpu_ms, "bar_ms": 100.0}
        print(f"synthetic music, 10 s of 4 stems at 16 kHz stereo: {ms:.1f} ms wall, {cpu_ms:.1f} CPU-ms")
        for sr_file in (44100, 48000):
            seg, full = segment_read_ms(tmp, sr_file)
            rows[f"segment_read_{sr_file}"] = {"segment_ms": seg, "full_ms": full, "ratio": full / seg}
            print(f"3 s segment of a 60 s {sr_file} Hz stereo WAV: {seg:.2f} ms vs whole file {full:.1f} ms "
                  f"({full / seg:.0f}x)")
    print(f"({rows['card']}, 1-min load average {rows['load_avg_1min']:.1f}: other jobs on the machine make "
          "these numbers noisy)")
    if args.json:
        write_json(args.json, rows)
    return 0


# ---- pytest: CPU regression checks (make bench-check) ----

def test_segment_read_vs_full_file_cpu(benchmark, tmp_path):
    """Reading only the frames a segment needs must stay far cheaper than decoding the file whole."""
    seg, full = segment_read_ms(str(tmp_path))
    path = str(tmp_path / "long44100.wav")
    benchmark.pedantic(lambda: read_audio(path, start=25 * 44100, frames=3 * 44100), rounds=3, iterations=1)
    check_ratio(benchmark, "data_segment_read_vs_full_file_cpu", full, seg)


def test_synthetic_music_vs_realtime_cpu(benchmark):
    """10 s of 4-stem 16 kHz synthetic music must generate far faster than real time (the 'reference' is 10 s)."""
    ms = synth_ms()
    benchmark.pedantic(SyntheticMusic(1, seconds=10, sample_rate=16000, seed=0)[0].load_stems, rounds=2,
                       iterations=1)
    check_ratio(benchmark, "data_synth_10s_16k_vs_realtime_cpu", 10_000.0, ms)


if __name__ == "__main__":
    sys.exit(main())
