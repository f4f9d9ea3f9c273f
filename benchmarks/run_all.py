"""Runs the benchmark suites, each in its own subprocess with a timeout, and writes one results file + a report.

Suites, in run order: mixit (bench_mixit.py), training_v100 (bench_training.py --v100, CUDA only), training
(bench_training.py) and attention (bench_attention.py, last: its compiled performer-pytorch and L = 65536 anchors
are the slowest rows). Each is called as ``python SCRIPT --device DEV [--quick] --json FILE``;
its stdout/stderr go to LOG_DIR/<suite>.log. A suite that times out, crashes or is missing is recorded with that
status (and whatever JSON it wrote before, since suites may write after every row); nothing fails silently.
``--budget-s`` bounds the whole run: each suite gets min(its timeout, its share of what is left, in proportion
to the timeouts of the suites still to run). A suite runs in its own process group, killed whole on timeout or when
run_all is stopped, and is killed by the kernel if run_all itself dies first (PR_SET_PDEATHSIG).

    python benchmarks/run_all.py --device cuda --quick --out-dir DIR [--budget-s 280] [--suites training,mixit]
    python benchmarks/run_all.py --device cuda --quick --plan     # limits and headline rows; last line: their sum

Writes DIR/results.json (see benchmarks/README.md for its layout) and DIR/report.md (benchmarks/report.py).
Exit status 0 when every suite that applies to the device finished ok, 1 otherwise.
"""

import argparse
import ctypes
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time

import torch
from common import card_name, write_json
from report import render

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Suite:
    """One benchmark script; timeouts in seconds for --quick and for the full set; ``cuda_extra``: arguments on
    CUDA only; ``headline``: the rows the suite must bring back (printed by --plan)."""

    name: str
    script: str
    extra: tuple = ()
    quick_timeout: int = 90
    full_timeout: int = 1800
    cuda_only: bool = False
    cuda_extra: tuple = ()
    headline: str = ""


SUITES = (
    Suite("mixit", "bench_mixit.py", quick_timeout=40,
          headline="MixIT loss: ours vs brute force, asteroid, vectorised search at 3 s and 30 s (M = 4-16)"),
    Suite("training_v100", "bench_training.py", ("--v100", "--rates", "16000", "--models", "performer,convtasnet"),
          quick_timeout=50, full_timeout=1200, cuda_only=True, cuda_extra=("--segments", "3,5,10,30"),
          headline="32 GB V100 cap, 16 kHz: ours and ConvTasNet at 3/5/10/30 s (the 30 s memory row)"),
    Suite("training", "bench_training.py", quick_timeout=110, full_timeout=3600, cuda_extra=("--segments", "3,5,10,30"),
          headline="step ms and minutes per epoch: ours vs SDPA, performer-pytorch, ConvTasNet at 3/5/10/30 s"),
    Suite("attention", "bench_attention.py", quick_timeout=100,
          headline="FAVOR+ fwd+bwd: ours vs SDPA, performer-pytorch at L = 517/5168/65536 (bf16), 5168 (fp32)"),
)
MIN_SECONDS = 15  # a suite is not started with less budget than this
_RUNNING: list[subprocess.Popen] = []  # the suite in flight, killed with us (it runs in its own session)


def _kill_group(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM, then SIGKILL, to the suite's whole process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent() -> None:
    """preexec_fn of a suite: SIGKILL when run_all dies before it (Linux prctl PR_SET_PDEATHSIG; elsewhere no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _on_sigterm(signum, frame):
    for proc in _RUNNING:
        _kill_group(proc)
    raise SystemExit(128 + signum)


def _tail(path: str, chars: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def _run(cmd: list[str], log_path: str, timeout: float) -> tuple[int | None, bool]:
    """Runs ``cmd`` in its own process group, output to ``log_path``; returns (exit code, timed out)."""
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=os.path.dirname(HERE),
                                start_new_session=True, preexec_fn=_die_with_parent,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        _RUNNING.append(proc)
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return proc.returncode, True
        finally:
            _RUNNING.remove(proc)


def run_suite(suite: Suite, *, device: str, quick: bool, out_dir: str, log_dir: str, timeout: float) -> dict:
    """Runs one suite; returns its entry for results.json (status, rc, seconds, command, log, result)."""
    script = os.path.join(HERE, suite.script)
    json_path = os.path.join(out_dir, f"{suite.name}.json")
    log_path = os.path.join(log_dir, f"{suite.name}.log")
    entry = {"status": None, "rc": None, "seconds": None, "timeout_s": round(timeout), "log": log_path,
             "result": None}
    if suite.cuda_only and torch.device(device).type != "cuda":
        entry["status"] = "skipped: needs CUDA"
        return entry
    if not os.path.exists(script):
        entry["status"] = f"missing: {suite.script} not found"
        return entry
    if timeout < MIN_SECONDS:
        entry["status"] = f"skipped: only {timeout:.0f} s of the time budget left"
        return entry
    if os.path.exists(json_path):
        os.remove(json_path)
    cuda = torch.device(device).type == "cuda"
    cmd = [sys.executable, script, "--device", device, "--json", json_path, *(["--quick"] if quick else []),
           *suite.extra, *(suite.cuda_extra if cuda else ())]
    entry["command"] = " ".join(cmd)
    print(f"run_all: {suite.name} (timeout {timeout:.0f} s) ...", flush=True)
    t0 = time.monotonic()
    rc, timed_out = _run(cmd, log_path, timeout)
    entry["seconds"] = time.monotonic() - t0
    entry["rc"] = rc
    try:
        with open(json_path) as f:
            entry["result"] = json.load(f)
    except FileNotFoundError:
        pass
    except json.JSONDecodeError as err:
        entry["json_error"] = f"{json_path}: {err}"
    partial = " (partial results kept)" if entry["result"] else ""
    if timed_out:
        entry["status"] = f"timeout after {timeout:.0f} s{partial}"
    elif rc != 0:
        entry["status"] = f"failed (exit {rc}){partial}"
    elif entry["result"] is None:
        entry["status"] = "failed: exit 0 but no JSON written"
    else:
        entry["status"] = "ok"
    if entry["status"] != "ok":
        entry["log_tail"] = _tail(log_path)
    print(f"run_all: {suite.name}: {entry['status']} in {entry['seconds']:.0f} s", flush=True)
    return entry


def print_plan(suites: list[Suite], *, device: str, quick: bool) -> int:
    """Each suite that runs on ``device``: its limit and headline rows; the last line is the sum of the limits
    (gpu_check.sh keeps that much of its budget for this run, so every suite gets its whole limit)."""
    total = 0
    for suite in suites:
        if suite.cuda_only and torch.device(device).type != "cuda":
            print(f"  {suite.name:<14} skipped (needs CUDA)")
            continue
        limit = suite.quick_timeout if quick else suite.full_timeout
        total += limit
        print(f"  {suite.name:<14} {limit:>4} s  {suite.headline}")
    print(total)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="each suite's quick set (fits gpu_check.sh's budget)")
    p.add_argument("--out-dir", default="outputs/bench",
                   help="results.json, report.md and the suites' JSON go here (default outputs/bench, git-ignored)")
    p.add_argument("--log-dir", default=None, help="suite logs (default: OUT_DIR/logs)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget for all suites together")
    p.add_argument("--suites", type=lambda s: s.split(","), default=[s.name for s in SUITES],
                   help="comma-separated subset of " + ",".join(s.name for s in SUITES))
    p.add_argument("--plan", action="store_true",
                   help="print each suite's limit and headline rows, then the time they need in all; run nothing")
    args = p.parse_args(argv)
    known = {s.name: s for s in SUITES}
    unknown = [s for s in args.suites if s not in known]
    if unknown:
        p.error(f"unknown suites {unknown}; choose from {list(known)}")
    if args.plan:
        return print_plan([known[n] for n in args.suites], device=args.device, quick=args.quick)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    signal.signal(signal.SIGTERM, _on_sigterm)  # gpu_check.sh's `timeout` must not leave a suite running
    log_dir = args.log_dir or os.path.join(args.out_dir, "logs")
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    deadline = None if args.budget_s is None else time.monotonic() + args.budget_s
    results = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "device": args.device, "card": card_name(args.device), "torch": torch.__version__,
               "cuda": torch.version.cuda, "quick": args.quick, "budget_s": args.budget_s, "suites": {}}
    results_path = os.path.join(args.out_dir, "results.json")
    limit = lambda s: s.quick_timeout if args.quick else s.full_timeout
    runnable = [known[n] for n in args.suites if not (known[n].cuda_only and torch.device(args.device).type != "cuda")]
    for name in args.suites:
        suite = known[name]
        timeout = limit(suite)
        if deadline is not None and suite in runnable:
            # A share of what is left, in proportion to the suites' own limits: a slow early suite cannot starve
            # the later ones, and time an early suite does not use goes to those after it.
            later = runnable[runnable.index(suite):]
            timeout = min(timeout, (deadline - time.monotonic()) * limit(suite) / sum(limit(s) for s in later))
        results["suites"][name] = run_suite(suite, device=args.device, quick=args.quick, out_dir=args.out_dir,
                                            log_dir=log_dir, timeout=timeout)
        write_json(results_path, results)
    report_path = os.path.join(args.out_dir, "report.md")
    with open(report_path, "w") as f:
        f.write(render(results))
    print(f"run_all: wrote {results_path} and {report_path}")
    bad = [n for n, e in results["suites"].items() if e["status"] not in ("ok", "skipped: needs CUDA")]
    if bad:
        print("run_all: not ok: " + ", ".join(f"{n} ({results['suites'][n]['status']})" for n in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
