"""Separation quality for the same MixIT training time: PerformerSeparator vs ConvTasNet on rendered chorales.

    python benchmarks/quality.py --minutes 10 --chorales 60 --out outputs/quality [--device cuda]

1. Renders ``--chorales`` four-part Bach chorales at 16 kHz (trackformer.data.render_chorales, MoisesDB layout;
   idempotent, so a second run reuses them) and splits them by song into train / held-out (trackformer.data).
2. Trains each model with MixIT (trackformer.train.fit) on mono ``--segment``-second segments for the same
   ``--minutes`` of wall time.
3. Scores every model on the same held-out mixtures of 2–4 stems of one chorale: SI-SNRi one-to-one and
   MixIT-style (trackformer.metrics.separation_scores), the effective mask count (mask models), and the oracle
   ideal-ratio-mask bound |S_k| / Σ_j |S_j| on the Performer's STFT (same n_fft, hop, Hann window).
Writes ``OUT/quality.json`` and ``OUT/quality.md`` (a markdown table). Not a test: numbers depend on the budget.
A step in progress when the budget ends is finished, so a model whose single step outlasts the budget (the
full-size ConvTasNet on a CPU) trains for exactly one step; the table shows steps and wall time.
For scale: an output proportional to the mixture scores 0 dB SI-SNRi.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import card_name, write_json  # noqa: E402

from trackformer.data import MoisesDB, render_chorales  # noqa: E402
from trackformer.metrics import effective_mask_count, separation_scores  # noqa: E402
from trackformer.models.stft import istft, stft  # noqa: E402
from trackformer.registry import load_checkpoint, load_model  # noqa: E402
from trackformer.train import TrainConfig, apply_overrides, fit, preset  # noqa: E402

SAMPLE_RATE = 16000
ACTIVE_RMS = 1e-3  # a stem quieter than this in a test segment is not picked as a reference


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training wall time per model")
    p.add_argument("--chorales", type=int, default=60, help="chorales to render (train + held out)")
    p.add_argument("--data-dir", default="outputs/chorales16k", help="where the rendered chorales go / are")
    p.add_argument("--out", default="outputs/quality", help="output folder (runs, JSON, markdown)")
    p.add_argument("--segment", type=float, default=5.0, help="segment seconds (training and test)")
    p.add_argument("--test-examples", type=int, default=48, help="held-out mixtures to score")
    p.add_argument("--models", default="performer,convtasnet", help="comma-separated: performer, convtasnet")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=1, help="loader workers per training run")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--performer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the Performer's model config (default: the tiny-cpu preset's on CPU, the "
                        "paper model on CUDA), e.g. n_layers=4")
    p.add_argument("--convtasnet-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override ConvTasNet's config (default: torchaudio's), e.g. msk_num_stacks=2")
    return p.parse_args(argv)


def model_configs(args, device: torch.device) -> dict:
    """Model name → model_config dict for the run."""
    performer = dict(preset("tiny-cpu").model_config) if device.type == "cpu" else {}
    base = preset("tiny-cpu").replace(model_config=performer)
    configs = {"performer": apply_overrides(base, [f"model_config.{s}" for s in args.performer_set]).model_config,
               "convtasnet": apply_overrides(base.replace(model="convtasnet", model_config={}),
                                             [f"model_config.{s}" for s in args.convtasnet_set]).model_config}
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(configs))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(configs)}")
    return {n: configs[n] for n in names}


def test_set(songs, *, n: int, segment: float, seed: int) -> list[dict]:
    """``n`` held-out mixtures: a segment of one song, 2–4 of its active stems, their sum. Deterministic."""
    rng = np.random.default_rng(seed)
    frames = round(segment * SAMPLE_RATE)
    examples, tries = [], 0
    while len(examples) < n:
        tries += 1
        if tries > 50 * n:
            raise RuntimeError(f"could not find {n} test segments with >= 2 active stems in {len(songs)} songs")
        song = songs[int(rng.integers(len(songs)))]
        start = int(rng.integers(0, max(song.num_frames - frames, 0) + 1))
        stems = song.load_stems(start, frames)
        active = [j for j in range(stems.shape[0]) if float(stems[j].square().mean().sqrt()) >= ACTIVE_RMS]
        if len(active) < 2:
            continue
        k = int(rng.integers(2, min(4, len(active)) + 1))
        chosen = sorted(rng.choice(active, size=k, replace=False).tolist())
        refs = stems[chosen]
        examples.append(dict(song=song.name, start=start, stems=refs, mixture=refs.sum(0), k=k))
    return examples


def oracle_irm(refs: torch.Tensor, mixture: torch.Tensor, n_fft: int, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ideal ratio masks |S_k| / Σ_j |S_j| applied to the mixture STFT: (estimates (K, C, T), masks (K, C, F, L))."""
    window = torch.hann_window(n_fft)
    specs = stft(refs, n_fft, hop, window)  # (K, C, F, L)
    mags = specs.abs()
    masks = mags / mags.sum(0, keepdim=True).clamp_min(1e-8)
    return istft(masks * stft(mixture, n_fft, hop, window), n_fft, hop, window, refs.shape[-1]), masks


@torch.no_grad()
def score_model(model, examples, device) -> list[dict]:
    rows = []
    for ex in examples:
        x = ex["mixture"][None].to(device)
        if hasattr(model, "spectrogram"):
            est, masks = model(x, return_masks=True)
            n_eff = float(effective_mask_count(masks, model.spectrogram(x).abs())[0])
        else:
            est, n_eff = model(x), None
        s = separation_scores(est[0].cpu(), ex["stems"], ex["mixture"])
        rows.append(dict(k=ex["k"], one_to_one_sisnri=s["one_to_one_sisnri"], mixit_sisnri=s["mixit_sisnri"],
                         n_eff=n_eff))
    return rows


def score_irm(examples, n_fft: int, hop: int) -> list[dict]:
    rows = []
    for ex in examples:
        est, masks = oracle_irm(ex["stems"], ex["mixture"], n_fft, hop)
        s = separation_scores(est, ex["stems"], ex["mixture"])
        mag = stft(ex["mixture"], n_fft, hop, torch.hann_window(n_fft)).abs()
        rows.append(dict(k=ex["k"], one_to_one_sisnri=s["one_to_one_sisnri"], mixit_sisnri=s["mixit_sisnri"],
                         n_eff=float(effective_mask_count(masks, mag))))
    return rows


def summarise(rows: list[dict]) -> dict:
    """Means overall and by number of stems k (n_eff only where defined)."""
    def means(subset):
        out = {"n": len(subset)}
        for key in ("one_to_one_sisnri", "mixit_sisnri", "n_eff"):
            values = [r[key] for r in subset if r[key] is not None]
            out[key] = float(np.mean(values)) if values else None
        return out

    return dict(overall=means(rows), by_k={k: means([r for r in rows if r["k"] == k])
                                           for k in sorted({r["k"] for r in rows})})


def markdown(result: dict) -> str:
    f = lambda v: "—" if v is None else f"{v:+.2f}"
    g = lambda v: "—" if v is None else f"{v:.2f}"
    ks = sorted({k for entry in result["entries"].values() for k in entry["summary"]["by_k"]})
    head = ("| model | params | steps in budget | train wall s | SI-SNRi one-to-one (dB) | SI-SNRi MixIT-style (dB) "
            "| N_eff | "
            + " | ".join(f"one-to-one, {k} stems" for k in ks) + " |")
    lines = [f"Held-out chorale mixtures (2–4 stems, {result['segment']} s, {SAMPLE_RATE} Hz mono), "
             f"{result['test_examples']} examples; {result['minutes']} min of MixIT training per model on "
             f"{result['card']}.", "", head, "|" + "---|" * (7 + len(ks))]
    for name, entry in result["entries"].items():
        o = entry["summary"]["overall"]
        per_k = " | ".join(f(entry["summary"]["by_k"].get(k, {}).get("one_to_one_sisnri")) for k in ks)
        wall = f"{entry['train_wall_s']:.0f}" if "train_wall_s" in entry else "—"
        lines.append(f"| {name} | {entry.get('params', '—')} | {entry.get('steps', '—')} | {wall} | "
                     f"{f(o['one_to_one_sisnri'])} | {f(o['mixit_sisnri'])} | {g(o['n_eff'])} | {per_k} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    os.makedirs(args.out, exist_ok=True)
    render = render_chorales(args.data_dir, n=args.chorales, sample_rate=SAMPLE_RATE, seed=args.seed)
    collection = MoisesDB(args.data_dir, sample_rate=SAMPLE_RATE, channels=1)
    held_out = collection.split("valid")
    if len(held_out) < 1 or len(collection.split("train")) < 2:
        raise SystemExit(f"{args.data_dir}: too few chorales for a train/held-out split ({len(collection.songs)})")
    examples = test_set(held_out, n=args.test_examples, segment=args.segment, seed=args.seed + 1)
    configs = model_configs(args, device)
    result = dict(card=card_name(device), minutes=args.minutes, segment=args.segment,
                  test_examples=len(examples), chorales=len(collection.songs), held_out_songs=len(held_out),
                  render={k: v for k, v in render.items() if k != "skipped"}, entries={})

    for name, model_config in configs.items():
        config = TrainConfig(model=name, model_config=model_config, data="moisesdb", root=args.data_dir,
                             sample_rate=SAMPLE_RATE, channels=1, segment_seconds=args.segment,
                             batch_size=args.batch_size, lr=args.lr, warmup_steps=50, max_steps=None,
                             max_minutes=args.minutes, examples_per_epoch=2000, valid_examples=0,
                             workers=args.workers, log_every=10, eval_every=10**9, checkpoint_every=10**9,
                             seed=args.seed, device=str(device), run_dir=os.path.join(args.out, name))
        t0 = time.perf_counter()
        path = fit(config)
        wall = time.perf_counter() - t0
        model, _ = load_model(path, map_location=device)
        steps = load_checkpoint(path)["step"]
        rows = score_model(model, examples, device)
        params = (model.num_parameters() if hasattr(model, "num_parameters")  # without MAE-only parameters
                  else sum(p.numel() for p in model.parameters()))
        result["entries"][name] = dict(params=params, steps=steps,
                                       train_wall_s=wall, examples_per_s=steps * args.batch_size / wall,
                                       model_config=model_config, summary=summarise(rows), rows=rows)
        print(f"{name}: {steps} steps, {summarise(rows)['overall']}", flush=True)

    ref = configs["performer"] if "performer" in configs else preset("tiny-cpu").model_config
    n_fft, hop = ref.get("n_fft", 1024), ref.get("hop", 256)  # SeparatorConfig's defaults when not set
    irm_rows = score_irm(examples, n_fft, hop)
    result["entries"][f"oracle IRM (n_fft {n_fft}, hop {hop})"] = dict(summary=summarise(irm_rows), rows=irm_rows)
    write_json(os.path.join(args.out, "quality.json"), result)
    table = markdown(result)
    with open(os.path.join(args.out, "quality.md"), "w") as f:
        f.write(table)
    print(table)
    print(json.dumps({k: v["summary"]["overall"] for k, v in result["entries"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
