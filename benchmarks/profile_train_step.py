"""Training throughput and a per-phase / per-op profile of the trainer's own MixIT step on the CPU.

The step is the one ``trackformer train`` runs: :class:`trackformer.train.trainer.Trainer` builds the model,
AdamW, schedule and Objective from a TrainConfig (preset ``default`` plus ``--set`` overrides, the CLI's
syntax) and ``Trainer._optimize`` runs forward, MixIT loss, backward, clipping and AdamW. The batches come from
the trainer's own loader (``Trainer._epoch_loader``: MixitPairs over a stems folder, ``data=stems``, ``workers``
as configured), so reading and mixing the audio is part of the measured time, as in the shipped recipe (which
reads rendered 16 kHz songs from disk). The folder holds 16 generated 4-stem songs of 12 s (SyntheticMusic),
written once as 16-bit WAV at ``--file-rate`` Hz (default: the run's rate; another rate adds the loader's
resampling) under ``--data-dir``.

Throughput = seconds of audio trained per wall-clock second: each step trains ``batch_size`` mixtures of
mixtures of ``segment_seconds`` each (the model hears x1 + x2: one segment of audio per example), over
``--steps`` timed steps after ``--warmup`` steps (torch.compile compiles during the warm-up).

Script:   python benchmarks/profile_train_step.py [--set KEY=VALUE ...] [--threads N] [--steps N] [--profile]
          e.g. --set sample_rate=44100 channels=2 model_config.n_fft=1024 model_config.hop=256 amp=bf16
Prints one JSON line {"config", "threads", "audio_s_per_s" (per wall second), "audio_s_per_cpu_s" (per second of
this process's CPU time: less sensitive to other load on a shared machine), "step_ms", "data_ms" (a batch alone),
"data_share", "cpu_bf16" (the CPU's native-bf16 flags, or none)}; ``--profile`` adds the phase breakdown (data,
forward + loss, backward, clip + AdamW; median wall ms per step) and the top ops by self CPU time from
torch.profiler (``--top``).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

from trackformer.data.audio import write_audio
from trackformer.data.synth import SyntheticMusic
from trackformer.train import distributed as tdist
from trackformer.train.config import apply_overrides, preset
from trackformer.train.songs import select_real_songs, select_songs
from trackformer.train.trainer import Trainer, keep_freed_memory, seed_everything

SONGS, SONG_SECONDS = 16, 12.0


def song_folder(data_dir: str, sample_rate: int, channels: int) -> str:
    """A stems folder of SONGS generated songs at ``sample_rate`` / ``channels`` (written on first use)."""
    root = os.path.join(data_dir, f"songs-{sample_rate}hz-{channels}ch")
    done = os.path.join(root, ".complete")
    if not os.path.isfile(done):
        for song in SyntheticMusic(SONGS, seconds=SONG_SECONDS, sample_rate=sample_rate, channels=channels).songs:
            os.makedirs(os.path.join(root, song.name), exist_ok=True)
            for name, stem in zip(song.stem_names, song.load_stems().numpy()):
                write_audio(os.path.join(root, song.name, f"{name}.wav"), stem, sample_rate)
        open(done, "w").close()
    return root


def make_trainer(overrides: list[str], *, data_dir: str, file_rate: int | None = None):
    """(trainer, state, objective, loader iterator) of preset 'default' with ``overrides`` on the CPU, its data
    from :func:`song_folder` at ``file_rate`` (default: the run's sample rate)."""
    cfg = apply_overrides(preset("default"), [*overrides, "device=cpu", "max_steps=100000",
                                              "examples_per_epoch=100000"])
    root = song_folder(data_dir, file_rate or cfg.sample_rate, cfg.channels)
    cfg = cfg.replace(data="stems", root=root)
    cfg.validate()
    trainer = Trainer(cfg, "mixit")
    trainer.dist = tdist.setup("cpu")
    keep_freed_memory()  # as Trainer._run on the CPU
    trainer.steps_per_epoch = cfg.examples_per_epoch // cfg.batch_size
    seed_everything(cfg.seed)
    state = trainer._start(trainer.dist.device, cfg.max_steps, resume=False)
    state.model.train()
    objective = trainer._objective(state.model, trainer.dist.device)
    train_songs, _ = select_songs(cfg)
    trainer.real_songs = select_real_songs(cfg)  # as Trainer._run: [] unless the config names a music corpus
    loader = iter(trainer._epoch_loader(train_songs, 0, 0))
    return trainer, state, objective, loader


def one_step(trainer, state, objective, loader, phases: dict | None = None) -> None:
    """One training step as Trainer._run does it (data -> _optimize); ``phases`` collects wall ms per phase."""
    t0 = time.perf_counter()
    batch = next(loader)
    x1, x2 = batch["x1"], batch["x2"]
    t1 = time.perf_counter()
    if phases is None:
        trainer._optimize(state, objective, x1, x2)
        return
    # the same calls as Trainer._optimize, timed one by one (the CPU runs them synchronously)
    cfg = trainer.config
    with trainer._autocast():
        loss, _ = objective(x1, x2)
    t2 = time.perf_counter()
    loss.backward()
    t3 = time.perf_counter()
    params = [p for p in state.model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    t4 = time.perf_counter()
    for name, a, b in (("data", t0, t1), ("forward+loss", t1, t2), ("backward", t2, t3), ("clip+adamw", t3, t4)):
        phases.setdefault(name, []).append(1e3 * (b - a))


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    trainer, state, objective, loader = make_trainer(args.set, data_dir=args.data_dir, file_rate=args.file_rate)
    cfg = trainer.config
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        one_step(trainer, state, objective, loader)
    warm_s = time.perf_counter() - t0
    data_ms = []
    t0 = time.perf_counter()
    for _ in range(args.steps):
        a = time.perf_counter()
        next(loader)
        data_ms.append(1e3 * (time.perf_counter() - a))
    data_total = time.perf_counter() - t0
    step_ms = []
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        a = time.perf_counter()
        one_step(trainer, state, objective, loader)
        step_ms.append(1e3 * (time.perf_counter() - a))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    audio = args.steps * cfg.batch_size * cfg.segment_seconds
    keys = ("sample_rate", "channels", "batch_size", "segment_seconds", "amp", "compile", "workers")
    row = {"config": {k: getattr(cfg, k) for k in keys} | {"file_rate": args.file_rate or cfg.sample_rate,
                                                             "n_fft": cfg.model_config.get("n_fft"),
                                                             "hop": cfg.model_config.get("hop")},
           "threads": torch.get_num_threads(), "steps": args.steps, "warmup_s": round(warm_s, 2),
           "audio_s_per_s": round(audio / wall, 3), "audio_s_per_cpu_s": round(audio / cpu, 3),
           "step_ms": round(statistics.median(step_ms), 1),
           "data_ms": round(statistics.median(data_ms), 2), "data_share": round(data_total / wall, 3),
           "cpu_bf16": cpu_has_bf16()}
    if args.profile:
        phases: dict = {}
        for _ in range(args.steps):
            one_step(trainer, state, objective, loader, phases)
        row["phases_ms"] = {k: round(statistics.median(v), 2) for k, v in phases.items()}
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                one_step(trainer, state, objective, loader)
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        events.sort(key=lambda e: -e.self_cpu_time_total)
        row["top_ops"] = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3),
                           "calls": e.count // args.steps} for e in events[:args.top]]
    return row


def cpu_has_bf16() -> str:
    """The CPU flags that make bf16 matmuls native (avx512_bf16, amx_bf16), or 'none' (lscpu's /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ",".join(found) or "none"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (CLI syntax)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--profile", action="store_true", help="add the phase breakdown and torch.profiler's top ops")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--data-dir", default="/tmp/trackformer-bench-songs", help="where the song folders are kept")
    p.add_argument("--file-rate", type=int, default=None, help="sample rate of the WAV files (default: the run's)")
    args = p.parse_args(argv)
    if args.threads < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--threads >= 1, --steps >= 1, --warmup >= 0")
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
