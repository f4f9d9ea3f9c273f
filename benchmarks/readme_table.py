"""The README's results table and plot, generated from benchmark results (never typed by hand).

The table has the paper's form: per sample rate and segment length, minutes per epoch of MixIT training for ours
(PerformerSeparator, FAVOR+), its SDPA twin and ConvTasNet, ours' speed-up over ConvTasNet, whether each fits a
32 GB V100 (from the training_v100 suite, when run), one-to-one SI-SNRi from benchmarks/quality.py runs
(``--quality``, one quality.json per segment length, 16 kHz rows; "–" where not measured) and the paper's
SI-SNR for context. The card, precision and epoch size are named above the table. The plot shows step time and
peak memory against segment length (log scale).

    python benchmarks/readme_table.py RESULTS.json [--quality quality.json ...] [--plot results.png] [--write-readme]

RESULTS.json is run_all.py's results.json, gpu_check.sh's gpu_report.json or a bench_training.py --json file.
The table goes to stdout (or ``--output``); ``--write-readme`` replaces what lies between ``<!-- results:start -->`` and
``<!-- results:end -->`` in README.md.
"""

import argparse
import json
import os
import sys

from anchors import PAPER

HERE = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- results:start -->", "<!-- results:end -->"
NAMES = {"performer": "ours (Performer, FAVOR+)", "sdpa": "SDPA twin", "convtasnet": "ConvTasNet"}


def training_results(results: dict) -> tuple[dict | None, dict | None]:
    """(training suite JSON, training_v100 suite JSON) from run_all's results, gpu_check's gpu_report.json or a
    bare bench_training.py file."""
    if "steps" in results and "benchmarks" in results:  # gpu_report.json
        results = results["benchmarks"] or {}
    if "suites" in results:
        get = lambda name: (results["suites"].get(name) or {}).get("result")
        return get("training"), get("training_v100")
    if results.get("suite") == "training":
        return results, None
    if results.get("suite") == "training_v100":
        return None, results
    raise ValueError("readme_table: the file holds neither run_all.py results nor a bench_training.py JSON")


def _cell(row: dict | None, key: str) -> str:
    if row is None:
        return "–"
    if row.get("status") == "oom":
        return "OOM"
    if row.get("status") != "ok" or row.get(key) is None:
        return "error" if row.get("status") == "error" else "–"
    v = row[key]
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def quality_sisnri(qualities: list[dict]) -> dict:
    """(model, rate, segment_s) -> one-to-one SI-SNRi dB from benchmarks/quality.py JSON files (one per segment)."""
    out = {}
    for q in qualities:
        rate, seg = q.get("sample_rate", 16000), float(q["segment"])  # quality.py renders at 16 kHz
        for model in ("performer", "convtasnet"):
            value = (((q.get("entries") or {}).get(model) or {}).get("summary") or {}).get("overall", {})
            if value.get("one_to_one_sisnri") is not None:
                out[(model, rate, seg)] = float(value["one_to_one_sisnri"])
    return out


def _quality_text(qualities: list[dict]) -> str:
    if not qualities:
        return " SI-SNRi: not measured yet (–)."
    runs = "; ".join(f"{q['segment']:g} s: {q.get('minutes', '?')} min per model on {q.get('card', '?')}"
                     for q in qualities)
    return (" SI-SNRi: one-to-one, held-out rendered chorales at 16 kHz after the same MixIT training time per "
            f"model (benchmarks/quality.py; {runs}).")


def table(results: dict, qualities: list[dict] | None = None) -> str:
    """The markdown table (with its caption line) for the README."""
    train, v100 = training_results(results)
    if not train or not train.get("rows"):
        raise ValueError("readme_table: no training rows in the results (run bench_training.py / run_all.py)")
    rows = train["rows"]
    cfg = train.get("config", {})
    index = {(r["impl"], r["rate"], float(r["segment_s"])): r for r in rows}
    v100_index = {(r["impl"], r["rate"], float(r["segment_s"])): r for r in (v100 or {}).get("rows", [])}
    qualities = qualities or []
    sisnri = quality_sisnri(qualities)
    cases = sorted({(r["rate"], float(r["segment_s"])) for r in rows})
    tiny = " (tiny models: a CPU dry run, not the real architectures)" if cfg.get("size") == "tiny" else ""
    amp = "under bf16 autocast" if cfg.get("amp") == "bf16" else "in fp32"
    lines = [f"MixIT training on **{train.get('card', '?')}**{tiny}, torch {train.get('torch', '?')}: batch "
             f"{cfg.get('batch', '?')} mixtures of mixtures, {cfg.get('channels', '?')} channel(s), M = "
             f"{cfg.get('M', 8)}; separators {amp}, ConvTasNet "
             f"{'fp32' if cfg.get('convtasnet_amp', 'none') == 'none' else cfg.get('convtasnet_amp')}; "
             f"an epoch is {cfg.get('epoch_hours', '?')} h of audio. Minutes per epoch = steps × median step time."
             + _quality_text(qualities), "",
             "| rate | segment | " + " | ".join(f"{NAMES[m]} min/epoch" for m in NAMES)
             + " | ours vs ConvTasNet | fits 32 GB V100: ours / ConvTasNet | SI-SNRi dB: ours / ConvTasNet "
             "| paper SI-SNR dB: Performer / ConvTasNet |",
             "|---|---|" + "---|" * (len(NAMES) + 4)]
    for rate, seg in cases:
        cells = [_cell(index.get((m, rate, seg)), "min_per_epoch") for m in NAMES]
        ours, conv = index.get(("performer", rate, seg)), index.get(("convtasnet", rate, seg))
        speed = "–"
        if ours and ours.get("ms") and conv and conv.get("ms"):
            speed = f"{conv['ms'] / ours['ms']:.1f}×"
        elif ours and ours.get("ms") and conv and conv.get("status") == "oom":
            speed = "ConvTasNet OOM"
        fits = " / ".join(_fits(v100_index.get((m, rate, seg))) for m in ("performer", "convtasnet"))
        q = " / ".join(_db(sisnri.get((m, rate, seg))) for m in ("performer", "convtasnet"))
        paper = " / ".join(_paper(m, seg) for m in ("performer", "convtasnet"))
        lines.append(f"| {rate / 1000:g} kHz | {seg:g} s | " + " | ".join(cells) + f" | {speed} | {fits} | {q} | "
                     f"{paper} |")
    return "\n".join(lines) + "\n"


def _fits(row: dict | None) -> str:
    if row is None:
        return "–"
    return {"ok": "yes", "oom": "OOM"}.get(row.get("status"), "error")


def _db(v) -> str:
    return "–" if v is None else f"{v:+.2f}"


def _paper(model: str, seg: float) -> str:
    table_ = PAPER["sisnr_db"][model]
    if int(seg) != seg or int(seg) not in table_:
        return "–"
    v = table_[int(seg)]
    return "OOM" if v is None else f"{v:+.2f}"


def plot(results: dict, path: str) -> None:
    """PNG: median step time and peak memory against segment length, log-log, one line per model and rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, _ = training_results(results)
    rows = (train or {}).get("rows", [])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (metric, label), ax in zip((("ms", "median step time (ms)"), ("peak_mib", "peak extra memory (MiB)")),
                                   axes):
        drawn = False
        for model in NAMES:
            for rate in sorted({r["rate"] for r in rows}):
                pts = sorted((float(r["segment_s"]), r[metric]) for r in rows
                             if r["impl"] == model and r["rate"] == rate and r.get(metric) is not None)
                ooms = [float(r["segment_s"]) for r in rows
                        if r["impl"] == model and r["rate"] == rate and r.get("status") == "oom"]
                if pts:
                    line, = ax.plot(*zip(*pts), marker="o", linestyle="-" if rate < 30000 else "--",
                                    label=f"{NAMES[model]}, {rate / 1000:g} kHz")
                    drawn = True
                    if ooms:
                        ax.plot(ooms, [max(p[1] for p in pts)] * len(ooms), "x", color=line.get_color(), ms=9)
        ax.set_xscale("log")
        segments = sorted({float(r["segment_s"]) for r in rows})
        ax.set_xticks(segments, [f"{s:g}" for s in segments])
        ax.minorticks_off()
        ax.set_xlabel("segment length (s)")
        ax.set_ylabel(label)
        if drawn:
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured on this device", ha="center", va="center", transform=ax.transAxes)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"MixIT training step on {(train or {}).get('card', '?')} (x: out of memory)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_readme(text: str, readme: str) -> None:
    """Replaces the text between the results markers of ``readme`` with ``text``."""
    with open(readme) as f:
        content = f.read()
    if content.count(START) != 1 or content.count(END) != 1 or content.index(START) > content.index(END):
        raise ValueError(f"readme_table: {readme} needs exactly one {START} ... {END} pair")
    head, rest = content.split(START)
    _, tail = rest.split(END)
    with open(readme, "w") as f:
        f.write(f"{head}{START}\n{text}{END}{tail}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="run_all.py results.json, gpu_report.json or a bench_training.py JSON")
    p.add_argument("--quality", action="append", default=[],
                   help="benchmarks/quality.py's quality.json (repeat for several segment lengths)")
    p.add_argument("--plot", help="write the PNG plot here")
    p.add_argument("--output", help="also write the table to this file")
    p.add_argument("--write-readme", action="store_true", help="update README.md between the results markers")
    p.add_argument("--readme", default=os.path.join(os.path.dirname(HERE), "README.md"))
    args = p.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
        qualities = []
        for path in args.quality:
            with open(path) as f:
                qualities.append(json.load(f))
        text = table(results, qualities)
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as err:
        print(f"readme_table: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    if args.plot:
        plot(results, args.plot)
    if args.write_readme:
        write_readme(text, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
