"""Compile every FAVOR+ Triton kernel for sm_90 (H100/H200) without a GPU and print registers, spills and
shared memory per thread block.

Uses ``triton.compile`` with ``GPUTarget("cuda", 90, 32)`` and the ptxas bundled with Triton
(``ptxas -v`` on the generated PTX gives registers and spill bytes; shared memory is Triton's own figure).
Head dim D and m features per ``--shapes`` (default D = 64, m = 256), the launch configurations the dispatcher
uses (``jobs``).

Compiled with the specialisation the JIT applies at run time (``tt.divisibility = 16``, as in
``BaseBackend.parse_attr``): every pointer 16-byte aligned (torch allocations; q/k/v views of a fused projection
when d_model × itemsize is a multiple of 16), and m and the batch/head/row element strides multiples of 16 (m is
validated as one; every stride of a (B, H, L, D) tensor with contiguous rows and D ≥ 16 is). Sizes the kernels
mark ``do_not_specialize`` (L, split counts) and H get no hint. Columns ``v4 ld`` / ``cp.async`` / ``wgmma`` /
``mma`` / ``bar`` count 16-byte global loads, asynchronous copies (pipelined loads), Hopper warpgroup MMAs,
warp-level ``mma.sync`` and block barriers (``bar.sync``) in the PTX (static counts over the whole kernel).
Usage: ``python benchmarks/triton_compile_report.py [--shapes 64:256,16:16,128:80] [--json OUT]``.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_json  # noqa: E402

from trackformer.kernels.favor import triton_bwd, triton_fwd  # noqa: E402

TYPES = {"fp32": "*fp32", "fp16": "*fp16", "bf16": "*bf16"}
TORCH_TYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _jit(kernel):
    """The JITFunction inside an autotuned kernel (or the kernel itself)."""
    return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel


def _signature(kernel, dtype: str, constexprs: dict) -> tuple[dict, dict]:
    """Triton signature (input-dtype pointers for q/k/v/out/grads, fp32 for the state, i32/fp32 scalars) and the
    divisibility attributes the JIT gives those arguments at run time."""
    io = {"Q", "K", "V", "OUT", "G", "DQ", "DK", "DV"}
    divisible = {"M"}  # m: a multiple of 16 (validated by the op); plus every pointer and element stride
    ints = {"L", "H", "N_SPLIT", "N_MAX", "N_RB", "TILES_PER_SPLIT", *divisible}
    floats = {"s", "eps"}
    sig, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        stride = name.endswith(("_SB", "_SH", "_SL"))
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ints or stride:  # sizes and element strides
            sig[name] = "i32"
        elif name in floats:
            sig[name] = "fp32"
        else:
            sig[name] = TYPES[dtype] if name in io else "*fp32"
        if sig[name].startswith("*") or stride or name in divisible:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def _ptx_counts(ptx: str) -> dict:
    """16-byte global loads, asynchronous copies, wgmma, mma.sync and barrier instructions in the PTX."""
    return {"v4_loads": len(re.findall(r"^\s*(?:@%p\d+\s+)?ld\.global(?:\.\w+)*\.v4", ptx, re.M)),
            "cp_async": len(re.findall(r"^\s*(?:@%p\d+\s+)?cp\.async\.(?:ca|cg|bulk)", ptx, re.M)),
            "wgmma": len(re.findall(r"^\s*wgmma\.mma_async", ptx, re.M)),
            "mma": len(re.findall(r"^\s*mma\.sync", ptx, re.M)),
            "barriers": len(re.findall(r"^\s*(?:bar|barrier)\.sync", ptx, re.M))}


def _ptxas_usage(ptx: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from ``ptxas -v`` on the kernel's PTX."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    arch = re.search(r"^\.target\s+(\w+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        log = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True).stderr
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return regs, int(spill.group(1)), int(spill.group(2))


def compile_one(kernel, dtype: str, constexprs: dict, num_warps: int, num_stages: int, m: int) -> dict:
    fn = _jit(kernel)
    signature, attrs = _signature(fn, dtype, constexprs)
    src = ASTSource(fn, signature, constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()},
                    attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    regs, spill_st, spill_ld = _ptxas_usage(compiled.asm["ptx"])
    return {"kernel": fn.__name__, "dtype": dtype, "D": constexprs["D"], "m": m, **{k: v for k, v in constexprs.items()
                                                                      if k.startswith("BLOCK")},
            "num_warps": num_warps, "num_stages": num_stages, "registers": regs, "spill_store_bytes": spill_st,
            "spill_load_bytes": spill_ld, "shared_bytes": compiled.metadata.shared, **_ptx_counts(compiled.asm["ptx"])}


def jobs(d: int, m: int, dtype: str):
    """(kernel, constexprs, num_warps, num_stages) for every launch configuration in use at head dim d, m features
    and this input dtype: one per kernel (gpu_check_steps.py counts a test selection's builds with it)."""
    bm = triton_fwd.block_m(m)
    prec = triton_fwd.DOT_PRECISION
    for kernel, half_dot in ((triton_fwd._kv_partial_kernel, True), (triton_bwd._dstate_kernel, False)):
        state = triton_fwd.state_launch(m, d, TORCH_TYPES[dtype], half_dot=half_dot)
        warps, stages = state.pop("num_warps"), state.pop("num_stages")
        state.update(D=d, INPUT_PRECISION=prec)
        if half_dot:
            state["VALUE_DTYPE"] = triton_fwd.bounded_dot_dtype(TORCH_TYPES[dtype])
        yield kernel, state, warps, stages
    yield triton_fwd._kv_reduce_kernel, {"D": d, "BLOCK_M": bm, "BLOCK_P": 64}, 4, 1
    staged = triton_fwd.staged_features(m, d)
    if staged:
        yield (triton_fwd._attend_staged_kernel, {"D": d, "BLOCK_L": triton_fwd.STAGED_BLOCK_L, "BLOCK_M": staged,
                                                  "INPUT_PRECISION": prec}, 8, 2)
    row = dict(triton_fwd.ROW_LAUNCH)
    warps, stages = row.pop("num_warps"), row.pop("num_stages")
    for kernel in (triton_fwd._attend_kernel, triton_bwd._dq_kernel, triton_bwd._dkv_kernel):
        if kernel is triton_fwd._attend_kernel and staged:
            continue
        yield kernel, {"D": d, "BLOCK_M": bm, "INPUT_PRECISION": prec, **row}, warps, stages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--shapes", default="64:256", help="comma-separated D:m pairs (head dim : features)")
    args = parser.parse_args()
    shapes = [tuple(int(x) for x in pair.split(":")) for pair in args.shapes.split(",")]
    rows = []
    print(f"{'kernel':<20}{'D':>4}{'m':>5} {'dtype':<6}{'BLOCK_L':>8}{'BLOCK_M':>8}{'warps':>6}{'stages':>7}"
          f"{'regs':>6}{'spill st/ld B':>15}{'smem B':>8}{'v4 ld':>6}{'cp.async':>9}{'wgmma':>6}{'mma':>5}{'bar':>5}")
    for d, m in shapes:
        for dtype in TYPES:
            for kernel, constexprs, warps, stages in jobs(d, m, dtype):
                row = compile_one(kernel, dtype, constexprs, warps, stages, m)
                rows.append(row)
                print(f"{row['kernel']:<20}{d:>4}{m:>5} {dtype:<6}{row.get('BLOCK_L', '-'):>8}"
                      f"{row.get('BLOCK_M', '-'):>8}{warps:>6}{stages:>7}{row['registers']:>6}"
                      f"{row['spill_store_bytes']:>8}/{row['spill_load_bytes']:<6}{row['shared_bytes']:>8}"
                      f"{row['v4_loads']:>6}{row['cp_async']:>9}{row['wgmma']:>6}{row['mma']:>5}"
                      f"{row['barriers']:>5}", flush=True)
    if args.json:
        write_json(args.json, {"target": "cuda sm_90 (compiled without a GPU)", "rows": rows})


if __name__ == "__main__":
    main()
