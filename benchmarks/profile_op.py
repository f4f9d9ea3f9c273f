"""Runs one op a fixed number of times inside NVTX ranges, for profilers (no benchmarking loop, no statistics).

    python benchmarks/profile_op.py OP [--shape K=V,...] [--dtype bf16] [--iters 5] [--torch-profiler TRACE.json]

OP and its shape keys (defaults in brackets):
  favor_attention   forward + backward of trackformer.kernels.favor_attention:
                    B [4], H [8], L [5168], D [64], m [256] (random features)
  mixit_loss        forward + backward of trackformer.mixit.mixit_loss: B [4], M [8], N [2], C [1], T [1323000]
  separator_step    one training step (benchmarks/bench_training.py): B [4], rate [44100], segment_s [10], C [1];
                    --model performer | sdpa | convtasnet
After ``--warmup`` untimed calls (kernel compilation, autotuning), the ``--iters`` profiled calls run between
torch.cuda.profiler.start()/stop() (cudaProfilerStart/Stop), each in an NVTX range ``profile/OP/iterI`` that holds
the ops' own ranges, so ``nsys --capture-range=cudaProfilerApi`` and ``ncu --profile-from-start off`` see exactly
those kernels. ``--torch-profiler`` also records them with torch.profiler and writes a Chrome trace
(chrome://tracing, ui.perfetto.dev). See benchmarks/README.md for the nsys/ncu commands.
"""

import argparse
import contextlib
import sys
import time

import torch
from bench_training import MODELS, build_model, make_batch, make_step

from trackformer.profiling import nvtx_range

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_SHAPES = {
    "favor_attention": {"B": 4, "H": 8, "L": 5168, "D": 64, "m": 256},
    "mixit_loss": {"B": 4, "M": 8, "N": 2, "C": 1, "T": 1323000},
    "separator_step": {"B": 4, "rate": 44100, "segment_s": 10, "C": 1},
}


def parse_shape(op: str, text: str | None) -> dict:
    """``"L=862,B=1"`` -> the op's default shape updated with those values (ValueError for unknown keys)."""
    shape = dict(DEFAULT_SHAPES[op])
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in shape:
            raise ValueError(f"--shape for {op}: expected K=V with K in {sorted(shape)}, got {item!r}")
        shape[key] = float(value) if key == "segment_s" else int(value)
        if shape[key] <= 0:
            raise ValueError(f"--shape for {op}: {key} must be positive, got {value}")
    return shape


def make_call(op: str, shape: dict, *, device, dtype: torch.dtype, model: str):
    """A closure running the op once (forward and backward); inputs are built here, outside the profiled calls."""
    if op == "favor_attention":
        from trackformer.kernels import favor_attention, orthogonal_random_features

        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(shape["B"], shape["H"], shape["L"], shape["D"], generator=gen).to(device, dtype)
                   .requires_grad_() for _ in range(3))
        proj = orthogonal_random_features(shape["m"], shape["D"], generator=gen).to(device)
        grad = torch.randn(q.shape, generator=gen).to(device, dtype)

        def call():
            out = favor_attention(q, k, v, proj)
            out.backward(grad)
        return call
    if op == "mixit_loss":
        from trackformer.mixit import mixit_loss

        gen = torch.Generator().manual_seed(0)
        est = torch.randn(shape["B"], shape["M"], shape["C"], shape["T"], generator=gen).to(device, dtype)
        est.requires_grad_()
        mix = torch.randn(shape["B"], shape["N"], shape["C"], shape["T"], generator=gen).to(device, dtype)
        return lambda: mixit_loss(est, mix).backward()
    if op == "separator_step":
        net = build_model(model, rate=shape["rate"], channels=shape["C"]).to(device)
        mixture, refs = make_batch(shape["B"], shape["C"], round(shape["rate"] * shape["segment_s"]), device)
        amp = "bf16" if dtype == torch.bfloat16 and model != "convtasnet" else "none"
        return make_step(net, mixture, refs, amp=amp)
    raise ValueError(f"unknown op {op!r}; expected one of {sorted(DEFAULT_SHAPES)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("op", choices=sorted(DEFAULT_SHAPES))
    p.add_argument("--shape", help="K=V,... overriding the op's default shape")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                   help="input dtype (separator_step: bf16 = autocast for the separators)")
    p.add_argument("--model", choices=MODELS, default="performer", help="separator_step's model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before profiling")
    p.add_argument("--iters", type=int, default=5, help="profiled calls")
    p.add_argument("--torch-profiler", metavar="TRACE.json", help="also record with torch.profiler; Chrome trace")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    if args.warmup < 0 or args.iters < 1:
        p.error("--warmup >= 0 and --iters >= 1 are required")
    try:
        shape = parse_shape(args.op, args.shape)
    except ValueError as err:
        p.error(str(err))
    cuda = device.type == "cuda"
    call = make_call(args.op, shape, device=device, dtype=DTYPES[args.dtype], model=args.model)
    for _ in range(args.warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
    prof = contextlib.nullcontext()
    if args.torch_profiler:
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        prof = torch.profiler.profile(activities=activities, record_shapes=True)
    times = []
    with prof:
        if cuda:
            torch.cuda.profiler.start()
        for i in range(args.iters):
            t0 = time.perf_counter()
            with nvtx_range(f"profile/{args.op}/iter{i}"):
                call()
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
        if cuda:
            torch.cuda.profiler.stop()
    if args.torch_profiler:
        prof.export_chrome_trace(args.torch_profiler)
        print(prof.key_averages().table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total",
                                        row_limit=25))
        print(f"profile_op: wrote {args.torch_profiler}")
    shape_text = ",".join(f"{k}={v:g}" for k, v in shape.items())
    print(f"profile_op: {args.op} {shape_text} {args.dtype} on {device}: {args.iters} calls, wall ms each "
          f"(not a benchmark): " + " ".join(f"{t:.2f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
