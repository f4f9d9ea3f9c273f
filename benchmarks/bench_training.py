"""One MixIT training step (forward, mixit_loss, backward, AdamW): PerformerSeparator vs SDPA twin vs ConvTasNet.

Models (``--models``): ``performer`` (PerformerSeparator, FAVOR+ attention: ours), ``sdpa`` (the same separator
with attention="softmax", i.e. PyTorch scaled_dot_product_attention: the stronger anchor), ``performer-pytorch``
(the same separator with performer-pytorch 1.1.4's eager FastAttention on the same random features: ANCHORS.md's
off-the-shelf Performer; rows are "skipped" where performer_pytorch is not importable) and ``convtasnet``
(trackformer.baselines.ConvTasNet, torchaudio's default configuration). Each step takes a batch of mixtures of
mixtures x1 + x2 (random audio at 0.1 RMS, the same batch every step), M = 8 outputs, and the exact MixIT loss
against (x1, x2). The separators run under bf16 autocast (``--amp``, as in ANCHORS.md), ConvTasNet in float32
(its anchor) unless ``--convtasnet-amp bf16``.

Reported per row: median step time (ms; CUDA events on a GPU), peak extra memory of one step beyond what is held
before it (MiB: model, gradients, AdamW state and the batch are held before; CUDA only), and minutes per epoch
for an epoch of ``--epoch-hours`` of audio (default 10 h, about MoisesDB's ≤ 4-stem songs) cut into segments, each
segment used once as one half of a mixture of mixtures: steps = hours·3600 / (2 · segment · batch).

``--v100`` caps the caching allocator at a 32 GB V100's memory less an estimated 400 MiB CUDA context
(torch.cuda.set_per_process_memory_fraction) and reports "oom" where such a card would run out (rows whose reserved
peak comes within 1 GiB of the cap are noted as borderline). Any out-of-memory row is recorded, freed, and the run
goes on (larger segments of the same model and rate are then recorded as "oom" without running). ``--compile MODE``
wraps the separators in torch.compile (``reduce-overhead`` adds CUDA graphs); the first step's time, compilation
included, is reported as ``first_step_s``.

Script:  python benchmarks/bench_training.py --device cuda [--quick] [--v100] [--json OUT.json]
pytest:  test_* functions below are CPU regression checks (make bench-check); script mode is never collected.
"""

import argparse
import contextlib
import gc
import math
import sys
import time

import torch
from common import (
    card_name,
    check_ratio,
    interleaved_min_ms,
    peak_extra_mib,
    record_row,
    suite_exit_code,
    suite_parser,
    time_ms,
)

from trackformer.baselines import ConvTasNet
from trackformer.mixit import mixit_loss
from trackformer.models import PerformerSeparator, SeparatorConfig
from trackformer.profiling import nvtx_range

MODELS = ("performer", "sdpa", "performer-pytorch", "convtasnet")
V100_MIB = 32510  # what torch.cuda.get_device_properties reports for a 32 GB V100
V100_CONTEXT_MIB = 400  # estimate: the CUDA context + torch's libraries on a V100 live outside the allocator
V100_CAP_MIB = V100_MIB - V100_CONTEXT_MIB  # the caching allocator's limit in --v100 mode
V100_BORDERLINE_MIB = 1024  # rows whose reserved peak comes this close to the cap are flagged
N_SOURCES = 8
CASE_KEYS = ("rate", "segment_s", "precision")
METRICS = (("ms", "{:8.1f} ms"), ("peak_mib", "{:7.0f} MiB"), ("min_per_epoch", "{:6.1f} min/epoch"),
           ("first_step_s", "first step {:.1f} s"))

# Small models for CPU dry runs (--size tiny): the same architectures with fewer and narrower layers.
TINY_SEPARATOR = dict(d_model=64, n_layers=2, n_heads=2, nb_features=32, ffn=128)
TINY_CONVTASNET = dict(enc_num_feats=64, msk_num_feats=32, msk_num_hidden_feats=64, msk_num_layers=3,
                       msk_num_stacks=1)


class OffTheShelfAttention(torch.nn.Module):
    """A FavorAttention's qkv/output projections around performer-pytorch's FastAttention, which gets the same
    random-feature projection: (B, L, d_model) -> (B, L, d_model). Benchmark-only baseline."""

    def __init__(self, attn: torch.nn.Module):
        super().__init__()
        from performer_pytorch import FastAttention  # benchmark-only dependency

        self.inner = attn
        self.fast = FastAttention(dim_heads=attn.d_head, nb_features=attn.nb_features)
        self.fast.projection_matrix = attn.projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, (b, length, _) = self.inner, x.shape
        q, k, v = a.qkv(x).view(b, length, 3, a.n_heads, a.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        y = self.fast(q, k, v)
        return a.dropout(a.out(y.transpose(1, 2).reshape(b, length, a.d_model)))


def build_model(name: str, *, rate: int, channels: int, size: str = "full") -> torch.nn.Module:
    """A freshly initialised model ``name`` (one of MODELS) with M = 8 outputs, in training mode, on the CPU.

    Raises ImportError for "performer-pytorch" when performer_pytorch is not installed."""
    if name in ("performer", "sdpa", "performer-pytorch"):
        extra = TINY_SEPARATOR if size == "tiny" else {}
        cfg = SeparatorConfig(channels=channels, n_sources=N_SOURCES, sample_rate=rate,
                              attention="softmax" if name == "sdpa" else "favor", **extra)
        model = PerformerSeparator(cfg)
        if name == "performer-pytorch":
            for block in model.blocks:
                block.attn = OffTheShelfAttention(block.attn)
        return model
    if name == "convtasnet":
        extra = TINY_CONVTASNET if size == "tiny" else {}
        return ConvTasNet(n_sources=N_SOURCES, sample_rate=rate, **extra)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def make_batch(batch: int, channels: int, samples: int, device, *, seed: int = 0):
    """Mixture of mixtures (B, C, T) and its two references (B, 2, C, T), float32 noise at 0.1 RMS."""
    gen = torch.Generator().manual_seed(seed)
    refs = 0.1 * torch.randn(batch, 2, channels, samples, generator=gen)
    refs = refs.to(device)
    return refs.sum(1), refs


def make_step(model: torch.nn.Module, mixture: torch.Tensor, references: torch.Tensor, *, amp: str = "none",
              compile_mode: str = "none"):
    """A closure running one training step of ``model`` on (mixture, references); returns the loss tensor.

    amp: "bf16" runs the forward pass under torch.autocast(bfloat16), "none" in float32. compile_mode: "none"
    or a torch.compile mode ("default", "reduce-overhead", "max-autotune-no-cudagraphs") for the model's forward.
    The MixIT loss (float32 statistics) and AdamW stay outside autocast and compile.
    """
    if amp not in ("none", "bf16"):
        raise ValueError(f"amp must be 'none' or 'bf16', got {amp!r}")
    device = mixture.device
    model.train()
    forward = model if compile_mode == "none" else torch.compile(model, mode=compile_mode)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp == "bf16" \
        else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with nvtx_range("train/forward"), autocast():
            estimates = forward(mixture)
        with nvtx_range("train/mixit"):
            loss = mixit_loss(estimates, references)
        with nvtx_range("train/backward"):
            loss.backward()
        with nvtx_range("train/optimizer"):
            opt.step()
        return loss

    return step


def steps_per_epoch(epoch_hours: float, segment_s: float, batch: int) -> int:
    """Steps in one epoch of ``epoch_hours`` of audio, each segment used once in one mixture of mixtures."""
    return math.ceil(epoch_hours * 3600 / (2 * segment_s * batch))


def _is_oom(err: BaseException) -> bool:
    """Out of memory, as the caching allocator or (as an allocation failure) cuDNN or cuBLAS reports it."""
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or any(
        t in text for t in ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed"))


def measure(name: str, *, rate: int, segment_s: float, batch: int, channels: int, device, amp: str,
            compile_mode: str, size: str, warmup: int, reps: int, epoch_hours: float) -> dict:
    """One row: builds the model, warms up, times ``reps`` steps; catches out-of-memory as status "oom"."""
    samples = round(rate * segment_s)
    row = {"impl": name, "ours": name == "performer", "rate": rate, "segment_s": segment_s, "batch": batch,
           "channels": channels, "samples": samples, "M": N_SOURCES, "precision": amp if amp != "none" else "fp32",
           "compile": compile_mode, "size": size, "status": "ok"}
    err_text = None
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        model = build_model(name, rate=rate, channels=channels, size=size).to(device)
        row["params"] = sum(p.numel() for p in model.parameters())
        mixture, refs = make_batch(batch, channels, samples, device)
        step = make_step(model, mixture, refs, amp=amp, compile_mode=compile_mode)
        t0 = time.perf_counter()
        loss = step()  # first call: kernel compilation, autotuning, torch.compile
        _sync(device)
        row["first_step_s"] = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite MixIT loss {loss.item()}")
        row["ms"] = time_ms(step, device, warmup=warmup, reps=reps)
        row["peak_mib"] = peak_extra_mib(step, device)
        row["steps_per_epoch"] = steps_per_epoch(epoch_hours, segment_s, batch)
        row["min_per_epoch"] = row["steps_per_epoch"] * row["ms"] / 60e3
        if cuda:  # everything the caching allocator held at once, the model and optimizer included
            row["reserved_peak_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    except ImportError as err:  # a benchmark-only baseline that is not installed
        row["status"] = "skipped"
        row["note"] = f"{err} (carry its wheels: shared/tools/fetch_gpu_wheels.sh)"
    except Exception as err:  # noqa: BLE001 - every failure becomes the row's status, reported, never hidden
        if _is_oom(err):
            row["status"] = "oom"
        else:
            row["status"] = "error"
            err_text = f"{type(err).__name__}: {err}"
    if err_text is not None:
        row["error"] = err_text[:500]
    # The exception (and the frames holding the model and activations) is gone here: free the memory.
    model = mixture = refs = step = loss = None  # noqa: F841
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def plan(args) -> list[dict]:
    """The (model, rate, segment) grid in run order: model by model (ours first, ConvTasNet, the slowest anchor,
    last), each from the fewest samples per step up, so a suite cut off by its timeout loses the slowest anchor
    rows, and a model's larger segments at one rate come after its smaller ones (for the out-of-memory rule)."""
    return sorted((dict(name=name, rate=rate, segment_s=seg) for rate in args.rates for seg in args.segments
                   for name in args.models), key=lambda r: (MODELS.index(r["name"]), r["rate"] * r["segment_s"]))


def run(args) -> dict:
    """Runs the grid; writes the JSON after every row (a timeout keeps what was measured)."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_training: --device cuda but torch sees no CUDA device")
    result = {
        "suite": "training_v100" if args.v100 else "training", "card": card_name(device), "device": str(device),
        "torch": torch.__version__, "quick": args.quick,
        "config": {"batch": args.batch, "channels": args.channels, "M": N_SOURCES, "amp": args.amp,
                   "convtasnet_amp": args.convtasnet_amp, "compile": args.compile, "size": args.size,
                   "epoch_hours": args.epoch_hours, "warmup": args.warmup, "reps": args.reps,
                   "v100_cap_mib": V100_CAP_MIB if args.v100 else None,
                   "epoch": "steps = epoch_hours*3600 / (2 * segment_s * batch); min_per_epoch = steps * ms / 60000",
                   "peak_mib": "extra CUDA memory of one step beyond what is held before it (model, gradients, "
                               "AdamW state, batch)"},
        "rows": [],
    }
    if args.v100:
        if device.type != "cuda":
            raise SystemExit("bench_training: --v100 needs --device cuda (it caps the CUDA memory)")
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, V100_CAP_MIB * 2**20 / total), device)
    oom_at = {}  # (model, rate) -> smallest segment that ran out of memory
    for item in plan(args):
        key = (item["name"], item["rate"])
        amp = args.convtasnet_amp if item["name"] == "convtasnet" else args.amp
        compile_mode = "none" if item["name"] == "convtasnet" else args.compile
        if key in oom_at:
            row = {"impl": item["name"], "ours": item["name"] == "performer", "rate": item["rate"],
                   "segment_s": item["segment_s"], "batch": args.batch, "channels": args.channels, "M": N_SOURCES,
                   "precision": amp if amp != "none" else "fp32", "compile": compile_mode, "size": args.size,
                   "status": "oom", "note": f"skipped: {oom_at[key]} s already ran out of memory"}
        else:
            row = measure(item["name"], rate=item["rate"], segment_s=item["segment_s"], batch=args.batch,
                          channels=args.channels, device=device, amp=amp, compile_mode=compile_mode, size=args.size,
                          warmup=args.warmup, reps=args.reps, epoch_hours=args.epoch_hours)
            if row["status"] == "oom":
                oom_at[key] = item["segment_s"]
            elif args.v100 and row.get("reserved_peak_mib", 0) > V100_CAP_MIB - V100_BORDERLINE_MIB:
                row["note"] = (f"borderline: {row['reserved_peak_mib']:.0f} MiB reserved, within "
                               f"{V100_BORDERLINE_MIB} MiB of the {V100_CAP_MIB} MiB cap; a real V100 may run out")
        record_row(result, row, args.json, CASE_KEYS, METRICS)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = suite_parser(__doc__.split("\n")[0],
                     "the gpu_check subset (CUDA: 3/10/30 s; CPU: tiny models, 0.5/1 s at 16 kHz)")
    p.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS), help="comma-separated subset")
    p.add_argument("--rates", type=lambda s: [int(r) for r in s.split(",")], default=None, help="Hz, comma-separated")
    p.add_argument("--segments", type=lambda s: [float(x) for x in s.split(",")], default=None,
                   help="seconds, comma-separated")
    p.add_argument("--batch", type=int, default=4, help="mixtures of mixtures per step")
    p.add_argument("--channels", type=int, default=1, help="1 (mono, as ANCHORS.md) or 2")
    p.add_argument("--amp", choices=("bf16", "none"), default=None,
                   help="autocast of the separators (default: bf16 on CUDA, none on the CPU)")
    p.add_argument("--convtasnet-amp", choices=("bf16", "none"), default="none")
    p.add_argument("--compile", default="none",
                   choices=("none", "default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                   help="torch.compile mode for the separators (reduce-overhead = CUDA graphs)")
    p.add_argument("--size", choices=("full", "tiny"), default=None, help="full models, or tiny ones for CPU runs")
    p.add_argument("--v100", action="store_true", help="cap CUDA memory at a 32 GB V100's and report its OOMs")
    p.add_argument("--epoch-hours", type=float, default=10.0, help="hours of audio in one epoch")
    args = p.parse_args(argv)
    unknown = set(args.models) - set(MODELS)
    if unknown:
        p.error(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    cpu = torch.device(args.device).type == "cpu"
    if args.amp is None:
        args.amp = "none" if cpu else "bf16"
    if args.size is None:
        args.size = "tiny" if cpu and args.quick else "full"
    if args.rates is None:
        args.rates = [16000] if cpu and args.quick else [16000, 44100]
    if args.segments is None:
        args.segments = [0.5, 1.0] if cpu and args.quick else [3, 10, 30] if args.quick else [3, 5, 10, 30]
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.reps is None:
        args.reps = 3 if args.quick else 7
    if args.batch < 1 or args.channels not in (1, 2) or args.epoch_hours <= 0 or args.reps < 1:
        p.error("--batch >= 1, --channels 1 or 2, --epoch-hours > 0 and --reps >= 1 are required")
    return args


def main(argv=None) -> int:
    return suite_exit_code(run(parse_args(argv)))


# ----------------------------------------------------------------------------------- CPU regression checks
# Guards the whole Performer training step on the CPU (STFT, FAVOR+ CPU path, exact MixIT search, backward, AdamW)
# against ConvTasNet's at the same audio: 16 kHz, 1 s, batch 1, mono, both at their full default size. ConvTasNet
# works at 2 kHz frames (stride 8) through 24 conv blocks; the separator at 62.5 frames/s. A regression in any
# piece of our step (e.g. attention materialising L x L, the MixIT search falling back to remixing waveforms, a
# slow STFT) lowers the ratio. Absolute times are recorded in the benchmark JSON but never gate.
CHECK = dict(rate=16000, segment_s=1.0, batch=1, channels=1)


def _cpu_step(name: str):
    torch.manual_seed(0)
    model = build_model(name, rate=CHECK["rate"], channels=CHECK["channels"])
    mixture, refs = make_batch(CHECK["batch"], CHECK["channels"], round(CHECK["rate"] * CHECK["segment_s"]), "cpu")
    return make_step(model, mixture, refs)



def test_training_step_performer_vs_convtasnet(benchmark):
    performer, convtasnet = _cpu_step("performer"), _cpu_step("convtasnet")
    performer(), convtasnet()  # warm-up
    conv_ms, perf_ms = interleaved_min_ms([convtasnet, performer], reps=3)
    benchmark.pedantic(performer, rounds=3, iterations=1)
    check_ratio(benchmark, "training_step_performer_vs_convtasnet_cpu", conv_ms, perf_ms)


if __name__ == "__main__":
    sys.exit(main())
