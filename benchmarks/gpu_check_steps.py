"""The Python steps of gpu_check.sh: environment, toolchain, carried wheels, the extension's ops, pytest via the shim.

    python benchmarks/gpu_check_steps.py environment
    python benchmarks/gpu_check_steps.py toolchain                # nvcc, ninja, setuptools >= 77
    python benchmarks/gpu_check_steps.py builds                   # the Triton builds the FAVOR+ GPU tests need
    python benchmarks/gpu_check_steps.py warm-triton [--workers N] [--dry-run]   # compile them in parallel
    python benchmarks/gpu_check_steps.py wheels [--dry-run]       # every carried package imports
    python benchmarks/gpu_check_steps.py ops [--dry-run]          # the MixIT ops have CUDA kernels
    python benchmarks/gpu_check_steps.py pytest [--timeout S] [--require-module NAME] -- PYTEST_ARGS...

Each step prints what it found and exits 0 (ok), 1 (failed, with one line starting ``gpu_check:`` that says why) or
77 (skipped, the last line says why). ``pytest`` imports trackformer (from gpu_check.sh's package shim, first on
PYTHONPATH) before pytest puts the repository root on sys.path, adds a per-test ``--timeout`` when pytest-timeout is
installed, and with ``--require-module NAME`` treats a skipped test as a failure when NAME imports (exit 77 when it
does not: nothing to check).
"""

import argparse
import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

SKIPPED = 77
FETCH = "../shared/tools/fetch_gpu_wheels.sh .whl"  # run from the repository root, then carry .whl
# What the fetch script carries, by import name: the tests need soundfile (with its bundled libsndfile), cffi and
# pycparser; the anchors need einops >= 0.8.1, performer_pytorch (importing it imports the pure-Python
# dependencies it was carried with) and asteroid's MixIT wrapper file.
CARRIED = ("soundfile", "cffi", "pycparser", "einops", "performer_pytorch", "setuptools")
# setuptools >= 77 reads pyproject.toml's SPDX `license = "MIT"` (older ones fail, and no _C gets built).
MIN_VERSIONS = {"einops": (0, 8, 1), "setuptools": (77,)}


def fail(message: str) -> int:
    print(f"gpu_check: {message}", flush=True)
    return 1


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def environment(_args) -> int:
    import numpy
    import torch

    print("python", platform.python_version(), sys.executable)
    print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| available", torch.cuda.is_available())
    print("numpy", numpy.__version__)
    try:
        import triton

        print("triton", triton.__version__)
    except ImportError as err:
        print("triton missing:", err)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"device {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, "
              f"sm_{p.major}{p.minor}")
    return 0


def toolchain(_args) -> int:
    """setuptools (the carried one: gpu_check.sh runs this after the wheels step), nvcc, ninja and CUDA_HOME as the
    build will see them; setuptools < 77 or a CUDA major version other than torch's fails."""
    import setuptools
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    print("setuptools", setuptools.__version__, "from", os.path.dirname(setuptools.__file__))
    if _version(setuptools.__version__) < MIN_VERSIONS["setuptools"]:
        return fail(f"setuptools {setuptools.__version__} < 77 cannot read pyproject.toml's license = \"MIT\" "
                    f"(no _C would be built); carry setuptools 80.9.0 with `{FETCH}`")
    print("CUDA_HOME", CUDA_HOME, "| torch built with CUDA", torch.version.cuda)
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
    ninja = shutil.which("ninja")
    found = {}
    for name, exe in (("nvcc", nvcc), ("ninja", ninja)):
        if exe is None or not os.path.exists(exe):
            print(f"{name}: not found")
            continue
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        found[name] = out
        print(f"{name} ({exe}):", out.splitlines()[-1] if out else "?")
    release = re.search(r"release (\d+)\.(\d+)", found.get("nvcc", ""))
    if torch.version.cuda is None:
        print("torch is a CPU build: the extension is built without CUDA")
        return 0
    if release is None:
        return fail("nvcc not found (set CUDA_HOME): the CUDA extension cannot be built")
    if int(release.group(1)) != _version(torch.version.cuda)[0]:
        return fail(f"nvcc is CUDA {release.group(1)}.{release.group(2)} but torch was built with CUDA "
                    f"{torch.version.cuda}: torch.utils.cpp_extension refuses a major-version mismatch")
    if "ninja" not in found:
        print("ninja not found: the build falls back to setuptools' slower compiler driver")
    return 0


def _asteroid_wrapper() -> str:
    spec = importlib.util.find_spec("asteroid")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("No module named 'asteroid'")
    path = os.path.join(os.path.dirname(spec.origin), "losses", "mixit_wrapper.py")
    spec = importlib.util.spec_from_file_location("_asteroid_mixit_wrapper", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the one file the benchmarks load (asteroid is carried without its deps)
    module.MixITLossWrapper  # noqa: B018
    return path


def wheels(args) -> int:
    """Every carried package imports (soundfile with its libsndfile), at the versions the anchors need.

    With --dry-run (the CPU rehearsal, whose venv carries nothing) a package that is not installed is reported
    and tolerated; one that is installed but fails to import still fails."""
    checks = [(name, lambda name=name: importlib.import_module(name)) for name in CARRIED]
    checks.append(("asteroid (losses/mixit_wrapper.py)", _asteroid_wrapper))
    for name, load in checks:
        try:
            module = load()
        except ModuleNotFoundError as err:
            if args.dry_run:
                print(f"{name}: not installed (dry run: this venv carries no wheels)")
                continue
            return fail(f"carried package {name} does not import ({err}); fetch the wheels with `{FETCH}` and "
                        "carry .whl")
        except Exception as err:  # noqa: BLE001 - any failure to import is the one line the run needs
            return fail(f"carried package {name} does not import ({type(err).__name__}: {err}); fetch the wheels "
                        f"with `{FETCH}` and carry .whl")
        where = module if isinstance(module, str) else getattr(module, "__file__", "?")
        version = getattr(module, "__version__", "")
        need = MIN_VERSIONS.get(name)
        if need and _version(version) < need:
            return fail(f"carried package {name} is {version}, the anchors need >= {'.'.join(map(str, need))}; "
                        f"fetch the wheels with `{FETCH}`")
        if name == "soundfile":
            version += f" (libsndfile {module.__libsndfile_version__})"
        print(f"{name} {version} from {where}")
    return 0


def ops(args) -> int:
    """Loads trackformer._C and checks that the MixIT ops have CPU and Meta (fake) kernels and, unless --dry-run,
    CUDA ones. The other trackformer ops (FAVOR+, Python custom ops) are listed as found."""
    import torch

    import trackformer
    import trackformer.kernels
    import trackformer.mixit  # noqa: F401  (declares the fake kernels registered when _C loads)
    from trackformer import _ext

    try:
        _ext.load()
    except RuntimeError as err:
        return fail(str(err))
    print("trackformer from", os.path.dirname(trackformer.__file__), "| kernels from",
          os.path.dirname(trackformer.kernels.__file__), "| _C from", sys.modules["trackformer._C"].__file__)
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("trackformer::"))
    missing = []
    for op in names:
        have = {key: torch._C._dispatch_has_kernel_for_dispatch_key(op, key) for key in ("CPU", "CUDA", "Meta")}
        print(op, " ".join(f"{k}={'yes' if v else 'no'}" for k, v in have.items()))
        wanted = ("CPU", "Meta") if args.dry_run else ("CPU", "CUDA", "Meta")
        if op.startswith("trackformer::mixit_"):
            missing += [f"{op} {key}" for key in wanted if not have[key]]
    if not {"trackformer::mixit_stats", "trackformer::mixit_search"} <= set(names):
        return fail(f"the extension registered {names}, not the MixIT ops")
    if missing:
        return fail("kernels missing from the build: " + ", ".join(missing)
                    + ("" if args.dry_run else " (was it built with FORCE_CUDA=1?)"))
    return 0


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def favor_builds() -> tuple[list[tuple[str, int, int]], dict]:
    """The (dtype, D, m) classes of the FAVOR+ GPU tests (tests/test_favor_triton.py ``gpu_build_classes``) and
    the distinct Triton builds they need, {build: the first class that needs it}; a build is (kernel, dtype,
    constexprs, warps, stages) as the dispatcher launches it (triton_compile_report.jobs), since no kernel
    specialises on lengths, head counts or split counts."""
    import torch
    from triton_compile_report import jobs

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from test_favor_triton import gpu_build_classes

    names = {getattr(torch, v): k for k, v in _DTYPES.items()}
    classes = sorted((names[dtype], d, m) for dtype, d, m in gpu_build_classes())
    builds = {}
    for dtype, d, m in classes:
        for kernel, constexprs, warps, stages in jobs(d, m, dtype):
            name = getattr(kernel, "__name__", None) or kernel.fn.__name__
            key = (name, dtype, tuple(sorted((k, str(v)) for k, v in constexprs.items())), warps, stages)
            builds.setdefault(key, (dtype, d, m))
    return classes, builds


def builds(_args) -> int:
    """Prints how many Triton builds the FAVOR+ GPU tests need, per kernel."""
    classes, found = favor_builds()
    per_kernel = {}
    for name, *_ in found:
        per_kernel[name] = per_kernel.get(name, 0) + 1
    print(f"FAVOR+ GPU tests: {len(found)} Triton builds for {len(classes)} (dtype, D, m) classes; per kernel: "
          + ", ".join(f"{k} {v}" for k, v in sorted(per_kernel.items())))
    return 0


def _warm_one(job: tuple[str, int, int, str]) -> tuple[str, int, int]:
    """Worker: one FAVOR+ forward and backward at (dtype, D, m) on a short sequence (every kernel of the class is
    built; builds do not depend on the length), which leaves the builds in TRITON_CACHE_DIR."""
    import torch

    from trackformer.kernels import favor_attention, orthogonal_random_features

    dtype, d, m, device = job
    q, k, v = (torch.randn(1, 2, 40, d, device=device, dtype=getattr(torch, _DTYPES[dtype]), requires_grad=True)
               for _ in range(3))
    out = favor_attention(q, k, v, orthogonal_random_features(m, d).to(device))
    torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    return dtype, d, m


def warm_triton(args) -> int:
    """Compiles the FAVOR+ GPU tests' Triton builds in ``--workers`` processes (into TRITON_CACHE_DIR, which the
    tests then read): one class per new build set. --dry-run: one class on the CPU under the interpreter (the
    plumbing only)."""
    import concurrent.futures
    import multiprocessing
    import time

    classes, found = favor_builds()
    needed = sorted(set(found.values()))  # the classes that bring a build no earlier class has
    device = "cpu" if args.dry_run else "cuda"
    if args.dry_run:
        needed = needed[:1]
        os.environ.update(TRITON_INTERPRET="1", TRACKFORMER_FAVOR_BACKEND="triton")
    print(f"warm-triton: {len(found)} builds from {len(needed)} of {len(classes)} classes on {args.workers} "
          f"processes ({device}); cache {os.environ.get('TRITON_CACHE_DIR', '~/.triton/cache')}", flush=True)
    t0, done = time.monotonic(), 0
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        futures = [pool.submit(_warm_one, (*c, device)) for c in needed]
        for future in concurrent.futures.as_completed(futures):
            try:
                dtype, d, m = future.result()
            except Exception as err:  # noqa: BLE001 - one line per failed class, the rest go on
                return fail(f"warm-triton: a class failed to build ({type(err).__name__}: {err})")
            done += 1
            print(f"warm-triton: {done}/{len(needed)} classes ({dtype}, D={d}, m={m}) after "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    print(f"warm-triton: done in {time.monotonic() - t0:.0f} s")
    return 0


class _Skips:
    """pytest plugin: counts skipped tests."""

    def __init__(self):
        self.skipped = []

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            self.skipped.append(report.nodeid)


def run_pytest(args) -> int:
    import torch  # noqa: F401

    import trackformer
    import trackformer.kernels
    import trackformer.mixit  # noqa: F401  (the shim's package, before pytest puts the repository root first)

    if args.require_module:
        try:
            importlib.import_module(args.require_module)
        except ModuleNotFoundError as err:
            print(f"{args.require_module} is not installed ({err}): nothing to check")
            return SKIPPED
    import pytest

    extra = []
    if args.timeout and importlib.util.find_spec("pytest_timeout") is not None:
        extra = [f"--timeout={args.timeout}"]
    print("trackformer from", os.path.dirname(trackformer.__file__), "| pytest", " ".join(extra + args.args),
          flush=True)
    skips = _Skips()
    rc = pytest.main(extra + args.args, plugins=[skips])
    if rc == 0 and args.require_module and skips.skipped:
        return fail(f"{args.require_module} imports, yet {len(skips.skipped)} test(s) skipped: "
                    + ", ".join(skips.skipped))
    return int(rc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("environment").set_defaults(fn=environment)
    sub.add_parser("toolchain").set_defaults(fn=toolchain)
    sub.add_parser("builds").set_defaults(fn=builds)
    s = sub.add_parser("warm-triton")
    s.add_argument("--workers", type=int, default=8, help="compiling processes (the build's nvcc takes the rest)")
    s.add_argument("--dry-run", action="store_true")
    s.set_defaults(fn=warm_triton)
    for name, fn in (("wheels", wheels), ("ops", ops)):
        s = sub.add_parser(name)
        s.add_argument("--dry-run", action="store_true")
        s.set_defaults(fn=fn)
    s = sub.add_parser("pytest")
    s.add_argument("--timeout", type=int, default=0, help="per-test limit (s), with pytest-timeout if installed")
    s.add_argument("--require-module", help="a skip counts as a failure when this module imports")
    s.add_argument("args", nargs=argparse.REMAINDER, help="pytest's arguments (after --)")
    s.set_defaults(fn=run_pytest)
    args = p.parse_args(argv)
    if getattr(args, "args", None) and args.args[0] == "--":
        args.args = args.args[1:]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
