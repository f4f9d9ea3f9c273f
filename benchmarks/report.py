"""Markdown report of a run_all.py results file: each of our numbers beside its anchors, with ratios.

For every row a suite marks as ours (``"ours": true``; rows as benchmarks/README.md describes them), the report
prints each baseline row of the same suite measured in the same run at the same case (same values for every
shape key the two rows share), the ratio baseline/ours (> 1: ours is faster or smaller), and ANCHORS.md's H200
number for that baseline as context (benchmarks/anchors.py). Rows that ran out of memory or failed are listed,
as is each suite's status, and ANCHORS.md's targets are checked where they apply.

    python benchmarks/report.py results.json [-o report.md]
    python benchmarks/report.py --steps STEPS.tsv --results results.json --gpu-report OUT_DIR \
        [--show-logs STEP,...]                                                                   (gpu_check.sh)
"""

import argparse
import json
import os
import re
import sys

from anchors import ANCHORS, CARD, PAPER, SOURCE, TARGETS
from common import write_json

# Keys that describe how a row was measured, not its case (never used to match rows). "precision" is how an impl
# ran (ours in bf16 vs ConvTasNet in fp32 is one comparison); "dtype" is a case key.
NOT_CASE = {"impl", "ours", "status", "error", "note", "card", "device", "suite", "size", "compile", "torch",
            "steps_per_epoch", "params", "samples", "precision"}
CASE_KEEP = {"segment_s"}  # a case key that looks like a measurement by its suffix
_METRIC = re.compile(r"(ms|mib|_s|tflops|gbs|per_epoch)$", re.I)
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# The training suite's names for the off-the-shelf separators ANCHORS.md measured.
IMPL_SYNONYMS = {"sdpa-transformer-separator": "sdpa", "performer-pytorch-separator": "performer-pytorch"}


def _impl(row: dict) -> str:
    return str(row.get("impl", "?"))


def is_ours(row: dict) -> bool:
    return bool(row.get("ours"))


def case_of(row: dict) -> dict:
    """The row's case: its shape keys (no measurements), dtypes spelled bf16/fp16/fp32."""
    case = {}
    for k, v in row.items():
        if k in NOT_CASE or isinstance(v, (dict, list)) or (_METRIC.search(k) and k not in CASE_KEEP):
            continue
        case[k] = DTYPES.get(v, v) if k == "dtype" else v
    return case


def same_case(a: dict, b: dict) -> bool:
    """Rows measured at the same case: equal on every case key both have (and at least one shared)."""
    shared = set(a) & set(b)
    return bool(shared) and all(a[k] == b[k] for k in shared)


def matches(anchor_case: dict, case: dict) -> bool:
    return all(k in case and case[k] == v for k, v in anchor_case.items())


def context_anchor(suite: str, impl: str, case: dict):
    """ANCHORS.md's anchor for baseline ``impl`` at ``case`` (suite names like training_v100 map to training)."""
    base_suite = suite.split("_")[0]
    for a in ANCHORS:
        if a.suite == base_suite and impl in (a.impl, IMPL_SYNONYMS.get(a.impl)) and matches(a.case, case):
            return a
    return None


def _fmt(v, unit="") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        v = f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"
    return f"{v}{unit}"


def _ratio(ref, ours) -> str:
    return "–" if not ref or not ours else f"{ref / ours:.2f}×"


def _case_text(case: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in case.items())


def _anchor_text(a) -> str:
    if a is None:
        return "–"
    ms, mib = a.values.get("ms"), a.values.get("peak_mib")
    if ms is None and "ms" in a.values:
        return "out of memory"
    return f"{ms:,g} ms" + (f" / {mib:,g} MiB" if mib is not None else "")


def suite_section(name: str, entry: dict) -> list[str]:
    """Markdown lines for one suite: ours vs same-run baselines, context anchors, targets, failures."""
    result = entry.get("result") or {}
    rows = result.get("rows") or []
    lines = [f"## {name}", "", f"Status: **{entry.get('status', '?')}**"
             + (f" ({entry['seconds']:.0f} s)" if entry.get("seconds") is not None else "")
             + (f"; card: {result['card']}" if result.get("card") else ""), ""]
    if result.get("config"):
        lines += [f"Config: `{json.dumps(result['config'], sort_keys=True)}`", ""]
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    ours = [r for r in ok if is_ours(r)]
    base = [r for r in ok if not is_ours(r)]
    if ours:
        fwd = any(r.get("fwd_ms") is not None for r in ours)  # suites timing the forward pass alone too
        lines += ["| case | ours ms | ours MiB | anchor (same run) | anchor ms | time ratio | anchor MiB | memory ratio"
                  + (" | fwd ms: ours / anchor (ratio)" if fwd else "") + f" | ANCHORS.md {CARD} (context) |",
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if fwd else "")]
        for r in ours:
            case, ms, mib = case_of(r), r.get("ms"), r.get("peak_mib")
            head = f"| {_case_text(case)} | {_fmt(ms)} | {_fmt(mib)} | "
            partners = [b for b in base if same_case(case, case_of(b))]
            shown = []
            for b in partners:
                b_ms, b_mib = b.get("ms"), b.get("peak_mib")
                a = None if b.get("size") == "tiny" else context_anchor(name, _impl(b), case_of(b))
                shown.append(a)
                fwd_cell = (f" | {_fmt(r.get('fwd_ms'))} / {_fmt(b.get('fwd_ms'))} "
                            f"({_ratio(b.get('fwd_ms'), r.get('fwd_ms'))})") if fwd else ""
                lines.append(f"{head}{_impl(b)} | {_fmt(b_ms)} | {_ratio(b_ms, ms)} | {_fmt(b_mib)} | "
                             f"{_ratio(b_mib, mib)}{fwd_cell} | {_anchor_text(a)} |")
            # ANCHORS.md baselines at this case that this run did not measure: context only, no ratio.
            unmatched = [] if r.get("size") == "tiny" else [
                a for a in ANCHORS if a.suite == name.split("_")[0] and matches(a.case, case) and a not in shown]
            for a in unmatched:
                lines.append(f"{head}{a.impl} (not run here) | – | – | – | –{' | –' if fwd else ''} | "
                             f"{_anchor_text(a)} |")
            if not partners and not unmatched:
                lines.append(f"{head}(none run) | – | – | – | –{' | –' if fwd else ''} | – |")
        lines.append("")
        lines += _targets(name, ours)
    elif ok:
        lines += ["No row is marked as ours (`\"ours\": true`); all rows:", ""]
    noted = [r for r in ok if r.get("note")]
    if noted:
        lines += ["Notes:", ""] + [f"- {_impl(r)} at {_case_text(case_of(r))}: {r['note']}" for r in noted] + [""]
    failed = [r for r in rows if r.get("status", "ok") != "ok"]
    if failed:
        lines += ["Not measured:", ""]
        for r in failed:
            why = r.get("error") or r.get("note") or ""
            lines.append(f"- {_impl(r)} at {_case_text(case_of(r))}: **{r.get('status')}** {why}".rstrip())
        lines.append("")
    if rows:
        lines += _all_rows(rows)
    if entry.get("status") != "ok" and entry.get("log_tail"):
        lines += ["Log tail:", "", "```", entry["log_tail"].rstrip(), "```", ""]
    return lines


def _targets(suite: str, ours: list[dict]) -> list[str]:
    out = []
    for t in TARGETS:
        if t.suite != suite.split("_")[0]:
            continue
        for r in ours:
            if r.get("size") == "tiny" or not matches(t.case, case_of(r)):
                continue
            value = r.get("ms") if t.metric == "ms" else r.get("peak_mib")
            if value is None:
                continue
            verdict = "met" if value <= t.limit else "NOT met"
            out.append(f"- target {t.text}: {_fmt(value)} at {_case_text(case_of(r))} → **{verdict}**")
    return out + [""] if out else []


def _all_rows(rows: list[dict]) -> list[str]:
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys and k not in ("card", "error", "note")
                 and not isinstance(r[k], (dict, list))]
    lines = ["<details><summary>all rows</summary>", "", "| " + " | ".join(keys) + " |",
             "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    return lines + ["", "</details>", ""]


def render(results: dict) -> str:
    """The whole report (markdown) for a run_all.py results dict."""
    lines = ["# trackformer benchmark report", "",
             f"Card: **{results.get('card', '?')}**; device {results.get('device', '?')}; torch "
             f"{results.get('torch', '?')} (CUDA {results.get('cuda') or '–'}); {results.get('created', '')}; "
             f"{'quick set' if results.get('quick') else 'full set'}.", "",
             "Ratios are anchor / ours measured in this run on this card (> 1: ours is faster or smaller). "
             f"The last column is {SOURCE}, context only: absolute times differ between cards.", ""]
    suites = results.get("suites", {})
    lines += ["| suite | status | seconds | rows |", "|---|---|---|---|"]
    for name, entry in suites.items():
        rows = ((entry.get("result") or {}).get("rows")) or []
        lines.append(f"| {name} | {entry.get('status', '?')} | {_fmt(entry.get('seconds'))} | {len(rows)} |")
    lines.append("")
    for name, entry in suites.items():
        lines += suite_section(name, entry)
    lines += ["## The paper, for context", "", f"{PAPER['source']}: {PAPER['epoch_speedup']}; SI-SNR (dB) per "
              "segment length: " + "; ".join(
                  f"{model} " + ", ".join(f"{s} s {('OOM' if v is None else f'{v:+.2f}')}"
                                          for s, v in table.items())
                  for model, table in PAPER["sisnr_db"].items()), ""]
    return "\n".join(lines)


def read_steps(path: str) -> list[dict]:
    """gpu_check.sh's step table: one ``name<TAB>status<TAB>seconds<TAB>log`` line per step."""
    steps = []
    with open(path) as f:
        for line in f:
            if line.strip():
                name, status, seconds, log = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
                steps.append({"step": name, "status": status, "seconds": int(seconds or 0), "log": log})
    return steps


def _log_tail(path: str, chars: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:].rstrip()
    except OSError:
        return ""


def gpu_report(steps: list[dict], results: dict | None, out_dir: str, show_logs=()) -> None:
    """Writes OUT_DIR/gpu_report.md (steps, failed steps' log tails, the logs of the ``show_logs`` steps as
    diagnostics, then the benchmark report) and OUT_DIR/gpu_report.json (with those diagnostics)."""
    lines = ["# gpu_check report", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
    lines += ["", "Every step's output is in gpu_check.log.", ""]
    for s in steps:
        if s["status"] != "ok" and not s["status"].startswith("skipped"):
            lines += [f"### {s['step']}: {s['status']}", "", "```", _log_tail(s["log"], 2500), "```", ""]
    diagnostics = {s["step"]: _log_tail(s["log"], 8000) for s in steps if s["step"] in show_logs}
    if diagnostics:
        lines += ["## Diagnostics", ""]
        for name, text in diagnostics.items():
            lines += [f"### {name}", "", "```", text, "```", ""]
    text = "\n".join(lines) + "\n"
    text += render(results) if results else "No benchmark results (benchmarks/run_all.py wrote no results.json).\n"
    with open(os.path.join(out_dir, "gpu_report.md"), "w") as f:
        f.write(text)
    write_json(os.path.join(out_dir, "gpu_report.json"),
               {"steps": steps, "diagnostics": diagnostics, "benchmarks": results})


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"report: cannot read results file {path}: {err}") from err


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="?", help="results JSON written by run_all.py")
    p.add_argument("-o", "--output", help="write the markdown here (default: stdout)")
    p.add_argument("--steps", help="gpu_check.sh mode: its step table (TSV)")
    p.add_argument("--results", dest="results_opt", help="gpu_check.sh mode: run_all.py's results (may be absent)")
    p.add_argument("--gpu-report", metavar="OUT_DIR", help="gpu_check.sh mode: write gpu_report.md/.json here")
    p.add_argument("--show-logs", type=lambda v: v.split(","), default=[],
                   help="gpu_check.sh mode: steps whose whole logs go into the report as diagnostics")
    args = p.parse_args(argv)
    if args.gpu_report:
        if not args.steps:
            p.error("--gpu-report needs --steps")
        path = args.results_opt
        results = _load(path) if path and os.path.exists(path) else None
        gpu_report(read_steps(args.steps), results, args.gpu_report, args.show_logs)
        return 0
    if not args.results:
        p.error("give a results JSON (or --gpu-report with --steps)")
    text = render(_load(args.results))
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
