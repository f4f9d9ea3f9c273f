"""FAVOR+ attention: ours (fused Triton on CUDA, chunked PyTorch on the CPU) against the attention users would pick.

Impls: ``ours`` (trackformer.kernels.favor_attention), ``reference`` (our plain formula, materialises φ),
``performer-pytorch`` (1.1.4 FastAttention, eager, same projection) and ``performer-pytorch-compiled``
(torch.compile default mode; compile time as ``compile_s``), ``sdpa`` (F.scaled_dot_product_attention, default
backend choice) and ``sdpa-flash``, ``sdpa-cudnn``, ``sdpa-efficient`` (one backend forced). B = 4, H = 8,
D = 64, m = 256; L ∈ {517, 862, 1723, 5168, 16384, 65536}; bf16 and fp32 (--quick: bf16 517 / 5168 / 65536 and
fp32 5168, compiled performer-pytorch at bf16 5168 only).

Per row: ``ms`` = forward + backward (random output gradient), ``fwd_ms`` = forward under no_grad, ``peak_mib`` /
``fwd_peak_mib`` = extra CUDA memory at the peak of one call. For ours also ``tflops`` / ``fwd_tflops`` (dot
FLOPs the kernels execute: forward 8·B·H·L·m·D, backward 18·B·H·L·m·D) and ``gbs`` / ``fwd_gbs`` (minimal
traffic: forward reads q, k, v and writes out; forward + backward adds reading q, k, v, out, dout and writing
dq, dk, dv: 4 and 12 tensors of B·H·L·D elements).

Script:  python benchmarks/bench_attention.py --device cuda [--quick] [--json OUT.json] [--impls a,b]
pytest:  test_* functions are CPU regression checks (make bench-check): ratios against committed thresholds.
"""

import argparse
import gc
import sys
import time
import warnings

import torch
import torch.nn.functional as F
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
from torch.utils._python_dispatch import TorchDispatchMode

from trackformer.kernels import favor_attention, orthogonal_random_features
from trackformer.kernels.favor.reference import favor_attention_reference

B, H, D, M = 4, 8, 64, 256
LENGTHS = (517, 862, 1723, 5168, 16384, 65536)
QUICK = (("bf16", 517), ("bf16", 5168), ("fp32", 5168), ("bf16", 65536))
QUICK_COMPILED = {("bf16", 5168)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION",
                 "sdpa-efficient": "EFFICIENT_ATTENTION"}
IMPLS = ("ours", "reference", "performer-pytorch", "performer-pytorch-compiled", "sdpa", *SDPA_BACKENDS)
SLOW_CALL_MS = 200.0  # a call slower than this is timed with 0 extra warm-ups and 3 runs
CASE_KEYS = ("dtype", "L")
METRICS = (("fwd_ms", "fwd {:8.3f} ms"), ("ms", "fwd+bwd {:8.3f} ms"), ("peak_mib", "{:7.0f} MiB"),
           ("compile_s", "compile {:.1f} s"), ("tflops", "{:6.1f} TFLOP/s"), ("gbs", "{:6.0f} GB/s"))


def _performer(device, dtype, w, compiled: bool):
    from performer_pytorch import FastAttention  # benchmark-only dependency

    fast = FastAttention(dim_heads=D, nb_features=M).to(device)
    fast.projection_matrix.copy_(w)
    return torch.compile(fast) if compiled else fast


def attention_fn(impl: str, w: torch.Tensor):
    """fn(q, k, v) -> out for one impl. Raises ImportError for performer-pytorch when it is not installed."""
    if impl == "ours":
        return lambda q, k, v: favor_attention(q, k, v, w)
    if impl == "reference":
        return lambda q, k, v: favor_attention_reference(q, k, v, w)
    if impl.startswith("performer-pytorch"):
        return _performer(w.device, w.dtype, w, compiled=impl.endswith("compiled"))
    if impl == "sdpa":
        return F.scaled_dot_product_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, SDPA_BACKENDS[impl])

    def forced(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v)

    return forced


def _timed(fn, device, warmup, reps):
    """(median ms, seconds of the first call): slow calls get fewer runs so the suite stays in budget."""
    t0 = time.perf_counter()
    fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    slow = first_s * 1e3 > SLOW_CALL_MS
    return time_ms(fn, device, warmup=0 if slow else warmup, reps=3 if slow else reps), first_s


def _unsupported_backend(impl: str, err: Exception, caught) -> str | None:
    """Why a forced SDPA backend has no kernel for these inputs (e.g. flash and cuDNN take only fp16/bf16), from
    torch's "No available kernel" error and the warnings it emitted; None for any other failure."""
    no_kernel = ("No available kernel", "No viable backend")  # torch's words on CUDA and on the CPU
    if impl not in SDPA_BACKENDS or not isinstance(err, RuntimeError) or not any(t in str(err) for t in no_kernel):
        return None
    reasons = []
    for w in caught:
        text = str(w.message).split("(Triggered internally")[0].strip().rstrip(".")
        if text and text not in reasons:
            reasons.append(text)
    return f"{impl} has no kernel for these inputs: " + ("; ".join(reasons) or str(err).split("\n")[0])[:400]


def _measure(row: dict, impl: str, dtype, device, warmup: int, reps: int) -> None:
    """Times impl at row's case into row (status "ok"), or marks it skipped when performer-pytorch is missing."""
    w = orthogonal_random_features(M, D).to(device)
    try:
        fn = attention_fn(impl, w)
    except ImportError:
        row.update(status="skipped", note="performer_pytorch not installed (see shared/tools/fetch_gpu_wheels.sh)")
        return
    length = row["L"]
    q, k, v = (torch.randn(B, H, length, D, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(B, H, length, D, device=device, dtype=dtype)

    def fwd():
        with torch.no_grad():
            fn(q, k, v)

    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(g)

    row["fwd_ms"], first_fwd_s = _timed(fwd, device, warmup, reps)
    row["fwd_peak_mib"] = peak_extra_mib(fwd, device)
    row["ms"], first_s = _timed(step, device, warmup, reps)
    row["peak_mib"] = peak_extra_mib(step, device)
    if impl.endswith("compiled"):
        row["compile_s"] = first_fwd_s + first_s
    if impl == "ours":
        work = B * H * length * M * D
        elems = B * H * length * D * torch.empty((), dtype=dtype).element_size()
        row["fwd_tflops"] = 8 * work / (row["fwd_ms"] * 1e-3) / 1e12
        row["tflops"] = 26 * work / (row["ms"] * 1e-3) / 1e12
        row["fwd_gbs"] = 4 * elems / (row["fwd_ms"] * 1e-3) / 1e9
        row["gbs"] = 12 * elems / (row["ms"] * 1e-3) / 1e9
    row["status"] = "ok"


def measure(impl, *, length, dtype_name, device, warmup, reps):
    """One row: ok, skipped (a baseline not installed, or a forced SDPA backend without a kernel for these
    inputs, with torch's reason), oom, or error (anything else, with the exception)."""
    row = {"impl": impl, "ours": impl == "ours", "L": length, "dtype": dtype_name, "B": B, "H": H, "D": D,
           "m": M}
    caught = None
    try:
        # a forced backend's warnings say why it has no kernel; recorded for the row's note
        with warnings.catch_warnings(record=impl in SDPA_BACKENDS) as caught:
            if caught is not None:
                warnings.simplefilter("always")
            _measure(row, impl, DTYPES[dtype_name], device, warmup, reps)
    except torch.OutOfMemoryError as err:
        row.update(status="oom", error=str(err).split("\n")[0])
    except Exception as err:  # recorded in the JSON; the run goes on with the next row
        why = _unsupported_backend(impl, err, caught or [])
        if why:
            row.update(status="skipped", note=why)
        else:
            row.update(status="error", error=f"{type(err).__name__}: {err}".split("\n")[0])
    finally:
        gc.collect()
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return row


def plan(args) -> list[tuple[str, int, str]]:
    """(dtype, L, impl) in the order they run: ours at every case first, then the anchors, the cheap ones first,
    then compiled performer-pytorch (cold compiles), then the anchors at L = 65536 (the slowest calls), so a suite
    cut off by its timeout loses only the last, slowest anchor rows."""
    cpu = torch.device(args.device).type == "cpu"
    if cpu:
        cases = [("fp32", 517)] if args.quick else [("fp32", n) for n in (517, 1723, 5168)]
    else:
        cases = list(QUICK) if args.quick else [(dt, n) for dt in ("bf16", "fp32") for n in LENGTHS]
    rows = [(dt, n, "ours") for dt, n in cases if "ours" in args.impls]
    for dt, n in cases:
        for impl in args.impls:
            if impl == "ours" or impl == "performer-pytorch-compiled" and (
                    cpu or (args.quick and (dt, n) not in QUICK_COMPILED)):
                continue
            rows.append((dt, n, impl))
    return sorted(rows, key=lambda r: (r[2] != "ours", r[1] >= 65536, r[2] == "performer-pytorch-compiled"))


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_attention: --device cuda but torch sees no CUDA device")
    result = {"suite": "attention", "card": card_name(device), "device": str(device), "torch": torch.__version__,
              "quick": args.quick,
              "config": {"B": B, "H": H, "D": D, "m": M, "warmup": args.warmup, "reps": args.reps,
                         "flops": "forward 8·B·H·L·m·D, forward+backward 26·B·H·L·m·D (dots executed)",
                         "gbs": "minimal traffic: 4 (forward) or 12 (forward+backward) tensors of B·H·L·D"},
              "rows": []}
    for dtype_name, length, impl in plan(args):
        row = measure(impl, length=length, dtype_name=dtype_name, device=device, warmup=args.warmup, reps=args.reps)
        record_row(result, row, args.json, CASE_KEYS, METRICS)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = suite_parser(__doc__.split("\n")[0], "the gpu_check subset (~90 s on an H100)")
    p.add_argument("--impls", type=lambda s: s.split(","), default=list(IMPLS), help="comma-separated subset")
    args = p.parse_args(argv)
    unknown = set(args.impls) - set(IMPLS)
    if unknown:
        p.error(f"unknown impls {sorted(unknown)}; choose from {IMPLS}")
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.reps is None:
        args.reps = 5 if args.quick else 7
    return args


def main(argv=None) -> int:
    return suite_exit_code(run(parse_args(argv)))


# ----------------------------------------------------------------------------------- CPU regression checks
# The chunked CPU path (what favor_attention runs on CPU tensors) against the plain formula, forward + backward,
# float32. Time: B = 1, H = 4, L = 4096, D = 64, m = 256 (one chunk), minimum of interleaved runs, so load from
# other processes slows both alike. Memory: the largest tensor any op creates at L = 16384 (D = 16): the
# formula's grows with L (B·H·L·m), the chunked path's is capped (chunked.CHUNK_ELEMENTS = 4·4096·256 here); a
# regression that materialises φ for the whole sequence drops that ratio to 1.
CHECK_TIME = dict(b=1, h=4, length=4096, d=64, m=256)
CHECK_MEMORY = dict(b=1, h=4, length=16384, d=16, m=256)



def _cpu_steps(cfg):
    q, k, v = (torch.randn(cfg["b"], cfg["h"], cfg["length"], cfg["d"], requires_grad=True) for _ in range(3))
    w = orthogonal_random_features(cfg["m"], cfg["d"])
    g = torch.randn_like(q)

    def step(fn):
        q.grad = k.grad = v.grad = None
        fn(q, k, v, w).backward(g)

    return (lambda: step(favor_attention)), (lambda: step(favor_attention_reference))


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_favor_chunked_vs_reference_cpu(benchmark, monkeypatch):
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "chunked")
    ours, reference = _cpu_steps(CHECK_TIME)
    ref_ms, ours_ms = interleaved_min_ms([reference, ours], reps=3)
    benchmark.pedantic(ours, rounds=2, iterations=1)
    check_ratio(benchmark, "favor_chunked_vs_reference_fwd_bwd_cpu", ref_ms, ours_ms)


def test_favor_chunked_largest_tensor_vs_reference_cpu(benchmark, monkeypatch):
    """Ratio of the largest tensor either creates (elements): memory-safe long sequences, not a time."""
    monkeypatch.setenv("TRACKFORMER_FAVOR_BACKEND", "chunked")
    sizes = []
    for step in _cpu_steps(CHECK_MEMORY):
        with _LargestTensor() as mode:
            step()
        sizes.append(mode.largest)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    check_ratio(benchmark, "favor_chunked_vs_reference_largest_tensor_cpu", sizes[1], sizes[0])


if __name__ == "__main__":
    sys.exit(main())
