"""MixIT loss, forward + backward: ours (trackformer.mixit) vs brute force, asteroid and the vectorised exact search.

Implementations (rows' ``impl``), all the thresholded-SNR loss of shared/DESIGN.md with snr_max = 30 dB:
  ours               trackformer.mixit.mixit_loss: fused statistics op, C++/CUDA search, one remix with autograd
  ours-cudagraph     the same forward + backward captured once in a CUDA graph and replayed (no launch overhead;
                     CUDA only): what a training step under CUDA graphs / torch.compile reduce-overhead pays
  bruteforce         trackformer.mixit.mixit_bruteforce: remix by every assignment (the tests' oracle)
  asteroid           asteroid 0.7.0 MixITLossWrapper(generalized=True), the file asteroid/losses/mixit_wrapper.py
                     loaded by path (benchmark-only; skipped when asteroid is not installed)
  vectorised-bmm     the exact inner-product search a skilled user writes (shared/ANCHORS.md): statistics by
                     torch.bmm, all N^M assignments scored with einsum, arg-min, one remix with autograd
  vectorised-splitk  the same with the statistics by a hand-made split-K (T cut into 256 chunks, then summed)
Each row: median fwd+bwd ms, peak extra MiB (CUDA), the statistics alone (stats_ms, ours and split-K), the
input size and the achieved bandwidth (input bytes / time) beside the card's device-to-device copy bandwidth
measured in the same run. B = 4, N = 2, mono, 44.1 kHz, float32 unless told.

Script:  python benchmarks/bench_mixit.py --device cuda [--quick] [--json OUT.json]
pytest:  test_* functions below are CPU regression checks (make bench-check); script mode is never collected.
"""

import argparse
import gc
import importlib.util
import os
import sys

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

from trackformer.mixit import mixit_bruteforce, mixit_loss
from trackformer.mixit.search import assignment_digits
from trackformer.mixit.stats import statistics

RATE = 44100
SNR_MAX = 30.0
TAU = 10 ** (-SNR_MAX / 10)
IMPLS = ("ours", "ours-cudagraph", "bruteforce", "asteroid", "vectorised-bmm", "vectorised-splitk")
CASE_KEYS = ("segment_s", "M")
METRICS = (("ms", "{:9.3f} ms"), ("peak_mib", "{:7.0f} MiB"), ("gbs", "{:7.1f} GB/s"),
           ("stats_ms", "stats {:7.3f} ms"))
# Baselines whose cost grows with N^M waveform remixes are run only where they finish in seconds
# (asteroid takes ~10 s per call at 1 s, M = 8 on a 2-core CPU).
MAX_REMIX_ASSIGNMENTS = {"cuda": {"bruteforce": 256, "asteroid": 256},
                         "cpu": {"bruteforce": 256, "asteroid": 256},
                         "cpu-quick": {"bruteforce": 256, "asteroid": 16}}


def load_asteroid_wrapper():
    """asteroid's MixITLossWrapper class from its single file (importing the package needs torchaudio), or None."""
    path = os.environ.get("ASTEROID_MIXIT_WRAPPER")
    if path is None:
        spec = importlib.util.find_spec("asteroid")
        if spec is None or spec.origin is None:
            return None
        path = os.path.join(os.path.dirname(spec.origin), "losses", "mixit_wrapper.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("_asteroid_mixit_wrapper", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MixITLossWrapper


def thresholded_snr(est_mixtures: torch.Tensor, mixtures: torch.Tensor) -> torch.Tensor:
    """Per-example thresholded-SNR loss (B,) of remixed estimates (B, N, T) against mixtures (B, N, T)."""
    energy = mixtures.pow(2).sum(-1)
    return (10 * torch.log10((mixtures - est_mixtures).pow(2).sum(-1) + TAU * energy + 1e-8)).mean(-1)


def vectorised_exact(est: torch.Tensor, mix: torch.Tensor, *, split_k: bool, chunks: int = 256) -> torch.Tensor:
    """ANCHORS.md's vectorised exact search: mean loss over the batch of est (B, M, T), mix (B, N, T)."""
    (b, m, t), n = est.shape, mix.shape[1]
    with torch.no_grad():
        s, x = est.detach(), mix
        if split_k:
            pad = (-t) % chunks
            s = torch.nn.functional.pad(s, (0, pad)).reshape(b, m, chunks, -1).transpose(1, 2)   # (B, K, M, T/K)
            x = torch.nn.functional.pad(x, (0, pad)).reshape(b, n, chunks, -1).transpose(1, 2)
            gram = (s @ s.transpose(-1, -2)).sum(1)
            cross = (s @ x.transpose(-1, -2)).sum(1)
        else:
            gram = torch.bmm(s, s.transpose(1, 2))
            cross = torch.bmm(s, x.transpose(1, 2))
        energy = mix.pow(2).sum(-1)
        k = torch.arange(n**m, device=est.device)
        onehot = torch.nn.functional.one_hot(assignment_digits(k, m, n), n).to(est.dtype)          # (K, M, N)
        lin = torch.einsum("kmn,bmn->bkn", onehot, cross)
        quad = torch.einsum("kmn,bmp,kpn->bkn", onehot, gram, onehot)
        err = (energy[:, None] - 2 * lin + quad).clamp_min(0)
        best = (10 * torch.log10(err + TAU * energy[:, None] + 1e-8)).mean(-1).argmin(1)
    remixed = torch.einsum("bmn,bmt->bnt", onehot[best], est)
    return thresholded_snr(remixed, mix).mean()


def copy_bandwidth_gbs(device) -> tuple[float | None, str | None]:
    """(device-to-device copy bandwidth of a 1 GiB buffer in GB/s counting read + write, None) on a GPU; (None,
    why) on the CPU or when the two buffers do not fit (the rows are measured all the same)."""
    if torch.device(device).type != "cuda":
        return None, "not measured on the CPU"
    try:
        src = torch.empty(2**28, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        ms = time_ms(lambda: dst.copy_(src), device, warmup=2, reps=5)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        return None, f"copy bandwidth not measured: {type(err).__name__}: {err}".split("\n")[0]
    finally:
        src = dst = None
        torch.cuda.empty_cache()
    return 2 * 2**30 / (ms * 1e-3) / 1e9, None


def make_inputs(batch, m, n, samples, device, dtype=torch.float32, seed=0):
    """Mixtures (B, N, T) of 0.1-RMS noise and estimates (B, M, T) that roughly split them, requiring grad."""
    g = torch.Generator(device=device).manual_seed(seed)  # drawn on the device: fast for 30 s inputs
    mix = 0.1 * torch.randn(batch, n, samples, generator=g, device=device)
    owner = torch.randint(0, n, (batch, m), generator=g, device=device)
    est = mix[torch.arange(batch, device=device)[:, None], owner] / m
    est += 0.02 * torch.randn(batch, m, samples, generator=g, device=device)
    return est.to(dtype).requires_grad_(True), mix.to(dtype)


def loss_fn(impl: str, est, mix, asteroid_cls=None):
    """A closure computing impl's mean loss for (est, mix) (forward only; the caller adds backward)."""
    if impl in ("ours", "ours-cudagraph"):
        return lambda: mixit_loss(est, mix, snr_max=SNR_MAX)
    if impl == "bruteforce":
        return lambda: mixit_bruteforce(est, mix, snr_max=SNR_MAX)[0].mean()
    if impl == "asteroid":
        wrapper = asteroid_cls(thresholded_snr, generalized=True)
        return lambda: wrapper(est, mix)
    if impl in ("vectorised-bmm", "vectorised-splitk"):
        return lambda: vectorised_exact(est, mix, split_k=impl == "vectorised-splitk")
    raise ValueError(f"unknown impl {impl!r}; expected one of {IMPLS}")


def stats_fn(impl: str, est, mix):
    """The statistics step alone, for ours and the split-K baseline (None for the others)."""
    if impl in ("ours", "ours-cudagraph"):
        return lambda: statistics(est.detach(), mix)
    if impl == "vectorised-splitk":
        def splitk():
            (b, m, t), n, k = est.shape, mix.shape[1], 256
            pad = (-t) % k
            s = torch.nn.functional.pad(est.detach(), (0, pad)).reshape(b, m, k, -1).transpose(1, 2)
            x = torch.nn.functional.pad(mix, (0, pad)).reshape(b, n, k, -1).transpose(1, 2)
            return (s @ s.transpose(-1, -2)).sum(1), (s @ x.transpose(-1, -2)).sum(1), mix.pow(2).sum(-1)
        return splitk
    return None


def cuda_graph_step(fwd, est):
    """Captures est.grad = fwd().backward() in a CUDA graph after two warm-up runs; returns graph.replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            est.grad = None
            fwd().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    est.grad = None
    with torch.cuda.graph(graph):
        fwd().backward()
    return graph.replay


def measure(impl, *, m, segment_s, batch, n, device, dtype, warmup, reps, asteroid_cls, copy_gbs, max_remix):
    samples = round(RATE * segment_s)
    row = {"impl": impl, "ours": impl.startswith("ours"), "segment_s": segment_s, "M": m, "N": n, "batch": batch,
           "dtype": str(dtype).removeprefix("torch."), "samples": samples}
    if impl in max_remix and n**m > max_remix[impl]:
        row.update(status="skipped", note=f"{n}^{m} waveform remixes per call; run only up to {max_remix[impl]}")
        return row
    if impl == "ours-cudagraph" and torch.device(device).type != "cuda":
        row.update(status="skipped", note="CUDA graphs need a CUDA device")
        return row
    if impl == "asteroid" and asteroid_cls is None:
        row.update(status="skipped", note="asteroid not installed (see shared/tools/fetch_gpu_wheels.sh)")
        return row
    try:
        est, mix = make_inputs(batch, m, n, samples, device, dtype)
        fwd = loss_fn(impl, est, mix, asteroid_cls)

        def step():
            est.grad = None
            fwd().backward()

        if impl == "ours-cudagraph":
            step = cuda_graph_step(fwd, est)

        row["ms"] = time_ms(step, device, warmup=warmup, reps=reps)
        row["peak_mib"] = peak_extra_mib(step, device)
        stats = stats_fn(impl, est, mix)
        if stats is not None:
            row["stats_ms"] = time_ms(stats, device, warmup=warmup, reps=reps)
        input_bytes = (est.numel() + mix.numel()) * est.element_size()
        row["input_mib"] = input_bytes / 2**20
        row["gbs"] = input_bytes / (row["ms"] * 1e-3) / 1e9
        if "stats_ms" in row:
            row["stats_gbs"] = input_bytes / (row["stats_ms"] * 1e-3) / 1e9
        if copy_gbs:
            row["copy_gbs"] = copy_gbs
        row["status"] = "ok"
    except torch.OutOfMemoryError as err:
        row.update(status="oom", error=str(err).split("\n")[0])
    except Exception as err:  # recorded in the JSON; the run goes on with the next row
        row.update(status="error", error=f"{type(err).__name__}: {err}")
    finally:
        est = mix = None
        gc.collect()
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return row


def plan(args) -> list[tuple[float, int]]:
    if args.segments is not None and args.estimates is not None:
        return [(s, m) for s in args.segments for m in args.estimates]
    cpu = torch.device(args.device).type == "cpu"
    if cpu:
        return [(s, m) for s in (args.segments or ([0.25] if args.quick else [3.0]))
                for m in (args.estimates or ([4, 8] if args.quick else [8]))]
    if args.quick:
        return [(3.0, 4), (3.0, 8), (3.0, 16), (10.0, 8), (30.0, 4), (30.0, 8), (30.0, 12), (30.0, 16)]
    return [(s, m) for s in (args.segments or [3.0, 10.0, 30.0]) for m in (args.estimates or [4, 8, 12, 16])]


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_mixit: --device cuda but torch sees no CUDA device")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    asteroid_cls = load_asteroid_wrapper()
    copy_gbs, copy_note = copy_bandwidth_gbs(device)
    max_remix = MAX_REMIX_ASSIGNMENTS["cuda" if device.type == "cuda" else "cpu-quick" if args.quick else "cpu"]
    result = {"suite": "mixit", "card": card_name(device), "device": str(device), "torch": torch.__version__,
              "quick": args.quick, "copy_gbs": copy_gbs, "copy_note": copy_note,
              "config": {"batch": args.batch, "N": 2, "rate": RATE, "channels": 1, "snr_max": SNR_MAX,
                         "dtype": args.dtype, "warmup": args.warmup, "reps": args.reps,
                         "asteroid": asteroid_cls is not None, "threads": torch.get_num_threads(),
                         "gbs": "input bytes (estimates + mixtures) / time; copy_gbs = the card's D2D copy"},
              "rows": []}
    # Ours at every case first, then the anchors, fastest first: a suite cut off by its timeout loses the slow
    # waveform-remixing anchors (asteroid, brute force), never our rows.
    rank = {"ours": 0, "ours-cudagraph": 0, "vectorised-splitk": 1, "vectorised-bmm": 1}
    rows = sorted(((s, m, impl) for s, m in plan(args) for impl in args.impls), key=lambda r: rank.get(r[2], 2))
    for segment_s, m, impl in rows:
        row = measure(impl, m=m, segment_s=segment_s, batch=args.batch, n=2, device=device, dtype=dtype,
                      warmup=args.warmup, reps=args.reps, asteroid_cls=asteroid_cls, copy_gbs=copy_gbs,
                      max_remix=max_remix)
        record_row(result, row, args.json, CASE_KEYS, METRICS)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = suite_parser(__doc__.split("\n")[0], "the gpu_check subset (CPU: 0.25 s, M = 4 and 8)")
    p.add_argument("--impls", type=lambda s: s.split(","), default=list(IMPLS), help="comma-separated subset")
    p.add_argument("--segments", type=lambda s: [float(x) for x in s.split(",")], default=None, help="seconds")
    p.add_argument("--estimates", type=lambda s: [int(x) for x in s.split(",")], default=None, help="values of M")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU runs")
    args = p.parse_args(argv)
    unknown = set(args.impls) - set(IMPLS)
    if unknown:
        p.error(f"unknown impls {sorted(unknown)}; choose from {IMPLS}")
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.reps is None:
        args.reps = (3 if torch.device(args.device).type == "cpu" else 5) if args.quick else 7
    if args.batch < 1 or args.reps < 1:
        p.error("--batch >= 1 and --reps >= 1 are required")
    return args


def main(argv=None) -> int:
    return suite_exit_code(run(parse_args(argv)))


# ----------------------------------------------------------------------------------- CPU regression checks
# Our loss (statistics op + C++ search + one remix) against the brute-force remix of all 2^8 assignments and the
# vectorised exact search, forward + backward at B = 4, M = 8, N = 2, 1 s at 44.1 kHz on the CPU. A regression
# (the search falling back to remixing, statistics by a slow path, a copy too many) lowers the ratios. Minimum of
# interleaved runs, so load from other processes slows both sides alike; absolute times never gate.
CHECK = dict(batch=4, m=8, n=2, samples=RATE)


def _cpu_steps(*impls):
    est, mix = make_inputs(CHECK["batch"], CHECK["m"], CHECK["n"], CHECK["samples"], "cpu")
    steps = []
    for impl in impls:
        fwd = loss_fn(impl, est, mix)
        steps.append(lambda fwd=fwd: fwd().backward())
    return steps


def test_mixit_loss_vs_bruteforce_cpu(benchmark):
    ours, brute = _cpu_steps("ours", "bruteforce")
    brute_ms, ours_ms = interleaved_min_ms([brute, ours], reps=2)
    benchmark.pedantic(ours, rounds=3, iterations=1)
    check_ratio(benchmark, "mixit_loss_vs_bruteforce_cpu", brute_ms, ours_ms)


def test_mixit_loss_vs_vectorised_splitk_cpu(benchmark):
    ours, vectorised = _cpu_steps("ours", "vectorised-splitk")
    vec_ms, ours_ms = interleaved_min_ms([vectorised, ours], reps=3)
    benchmark.pedantic(ours, rounds=3, iterations=1)
    check_ratio(benchmark, "mixit_loss_vs_vectorised_splitk_cpu", vec_ms, ours_ms)


if __name__ == "__main__":
    sys.exit(main())
