"""The Python steps of gpu_check.sh: environment, toolchain, carried wheels, the extension's ops, pytest via the shim.

    python benchmarks/gpu_check_steps.py environment
    python benchmarks/gpu_check_steps.py toolchain
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
CARRIED = ("soundfile", "cffi", "pycparser", "einops", "performer_pytorch")
MIN_VERSIONS = {"einops": (0, 8, 1)}


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
    """nvcc, ninja and CUDA_HOME as the build will see them; a CUDA major version other than torch's fails."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

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
