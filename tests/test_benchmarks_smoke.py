"""Fast CPU smoke tests of the benchmark tooling: anchors, report, run_all, bench_training, readme_table, profile_op."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import anchors  # noqa: E402
import bench_training  # noqa: E402
import profile_op  # noqa: E402
import readme_table  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402

ANCHORS_MD = os.path.join(os.path.dirname(os.path.dirname(BENCH)), "shared", "ANCHORS.md")


# ----------------------------------------------------------------------------------------------------- anchors
@pytest.mark.skipif(not os.path.exists(ANCHORS_MD), reason="shared/ANCHORS.md is not on this machine")
def test_every_anchor_number_appears_in_anchors_md():
    text = open(ANCHORS_MD).read().replace(",", "")
    numbers = {float(x) for x in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", text)}
    for a in anchors.ANCHORS:
        for metric, v in a.values.items():
            if v is not None:
                assert float(v) in numbers, (a.table, a.impl, a.case, metric, v)


def test_anchor_tables_are_complete():
    assert len(anchors.anchors_for("attention", "sdpa")) == 8
    assert len(anchors.anchors_for("mixit", "vectorised-splitk")) == 5
    conv = anchors.anchors_for("training", "convtasnet")
    assert len(conv) == 14
    oom = [a for a in conv if a.values["ms"] is None]
    assert [(a.case["rate"], a.case["segment_s"], a.case["batch"]) for a in oom] == [(44100, 30, 4)]


# ------------------------------------------------------------------------------------------------------ report
def _results(rows, suite="training", status="ok"):
    return {"card": "Test card", "device": "cpu", "torch": torch.__version__, "quick": True,
            "suites": {suite: {"status": status, "seconds": 1.0, "result": {"card": "Test card", "rows": rows}}}}


def _row(impl, ms, mib=None, status="ok", **case):
    case = {"rate": 16000, "segment_s": 3, "batch": 4, **case}
    return {"impl": impl, "ours": impl == "performer", "status": status, "ms": ms, "peak_mib": mib, **case}


def test_report_puts_ours_beside_same_run_anchor_with_ratio_and_context():
    rows = [_row("performer", 10.0, 100.0), _row("convtasnet", 30.0, 8000.0, note="borderline"),
            _row("sdpa", 5.0, 50.0), _row("convtasnet", None, status="oom", segment_s=30)]
    text = report.render(_results(rows))
    assert "- convtasnet at rate=16000, segment_s=3, batch=4: borderline" in text
    conv_line = next(line for line in text.splitlines() if "| convtasnet | 30" in line)
    assert "3.00×" in conv_line and "80.00×" in conv_line  # time and memory ratios anchor / ours
    assert "161 ms / 8,687 MiB" in conv_line  # ANCHORS.md: ConvTasNet, 16 kHz, 3 s, batch 4
    sdpa_line = next(line for line in text.splitlines() if "| sdpa | 5" in line)
    assert "0.50×" in sdpa_line and "22.3 ms / 200 MiB" in sdpa_line
    assert "convtasnet at rate=16000, segment_s=30, batch=4: **oom**" in text
    assert "target training step <= 20 ms at 16 kHz (batch 4): 10.0" in text and "**met**" in text


def test_report_matches_rows_only_at_the_same_case():
    rows = [{"impl": "ours", "ours": True, "L": 100, "dtype": "bf16", "ms": 1.0, "fwd_ms": 0.5, "status": "ok"},
            {"impl": "sdpa", "ours": False, "L": 100, "dtype": "fp32", "ms": 2.0, "fwd_ms": 1.0, "status": "ok"}]
    text = report.render(_results(rows, suite="attention"))
    assert "(none run)" in text and "2.00×" not in text
    rows[1]["dtype"] = "bfloat16"
    text = report.render(_results(rows, suite="attention"))
    assert "| sdpa | 2 | 2.00× |" in text and "0.5 / 1 (2.00×)" in text
    assert report.case_of({"impl": "x", "dtype": "float32", "ms": 1.0, "gbs": 3.2, "fwd_peak_mib": 2.0, "L": 5,
                           "segment_s": 3, "compile_s": 9.0}) == {"dtype": "fp32", "L": 5, "segment_s": 3}


def test_report_shows_anchors_md_baselines_not_run_as_context():
    rows = [{"impl": "ours", "ours": True, "L": 5168, "dtype": "bf16", "ms": 1.0, "status": "ok"}]
    text = report.render(_results(rows, suite="attention"))
    assert "performer-pytorch (not run here) | – | – | – | – | 4.52 ms / 893 MiB |" in text
    assert "sdpa-cudnn (not run here)" in text and "1.93 ms |" in text


def test_report_shows_failed_suite_status_and_log_tail():
    results = _results([], status="timeout after 60 s")
    results["suites"]["training"]["log_tail"] = "Traceback: boom"
    text = report.render(results)
    assert "timeout after 60 s" in text and "Traceback: boom" in text


def test_gpu_report_writes_markdown_and_json(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("nvcc fatal: something broke\n")
    steps = tmp_path / "steps.tsv"
    steps.write_text(f"environment\tok\t3\t{tmp_path / 'env.log'}\nbuild\tfailed (exit 1)\t40\t{log}\n")
    assert report.main(["--steps", str(steps), "--gpu-report", str(tmp_path)]) == 0
    md = (tmp_path / "gpu_report.md").read_text()
    assert "| build | failed (exit 1) | 40 |" in md and "nvcc fatal: something broke" in md
    assert "No benchmark results" in md
    data = json.loads((tmp_path / "gpu_report.json").read_text())
    assert [s["step"] for s in data["steps"]] == ["environment", "build"] and data["benchmarks"] is None


# ----------------------------------------------------------------------------------------------------- run_all
def _suite(tmp_path, body: str, name="fake") -> run_all.Suite:
    script = tmp_path / f"{name}.py"
    script.write_text("import argparse, json, sys, time\n"
                      "p = argparse.ArgumentParser(); p.add_argument('--device'); p.add_argument('--json')\n"
                      "p.add_argument('--quick', action='store_true'); a = p.parse_args()\n" + body)
    return run_all.Suite(name, str(script), quick_timeout=30)


@pytest.mark.parametrize("body, status", [
    ("json.dump({'rows': [{'impl': 'ours', 'ms': 1.0}]}, open(a.json, 'w'))\n", "ok"),
    ("json.dump({'rows': []}, open(a.json, 'w')); sys.exit(3)\n", "failed (exit 3) (partial results kept)"),
    ("print('no json')\n", "failed: exit 0 but no JSON written"),
    ("json.dump({'rows': []}, open(a.json, 'w')); time.sleep(60)\n", "timeout after 3 s (partial results kept)"),
])
def test_run_suite_records_every_outcome(tmp_path, monkeypatch, body, status):
    monkeypatch.setattr(run_all, "MIN_SECONDS", 1)
    entry = run_all.run_suite(_suite(tmp_path, body), device="cpu", quick=True, out_dir=str(tmp_path),
                              log_dir=str(tmp_path), timeout=3)
    assert entry["status"] == status
    if status != "ok":
        assert entry["log_tail"].startswith("$ ")


def test_run_suite_below_the_minimum_budget_is_skipped(tmp_path):
    entry = run_all.run_suite(_suite(tmp_path, "json.dump({'rows': []}, open(a.json, 'w'))\n"), device="cpu",
                              quick=True, out_dir=str(tmp_path), log_dir=str(tmp_path), timeout=2)
    assert entry["status"] == "skipped: only 2 s of the time budget left" and entry["result"] is None


def test_run_suite_missing_script_and_cuda_only(tmp_path):
    missing = run_all.run_suite(run_all.Suite("x", "no_such_bench.py"), device="cpu", quick=True,
                                out_dir=str(tmp_path), log_dir=str(tmp_path), timeout=30)
    assert missing["status"] == "missing: no_such_bench.py not found"
    cuda_only = run_all.run_suite(run_all.Suite("y", "bench_training.py", cuda_only=True), device="cpu",
                                  quick=True, out_dir=str(tmp_path), log_dir=str(tmp_path), timeout=30)
    assert cuda_only["status"] == "skipped: needs CUDA"


# ------------------------------------------------------------------------------------------------ bench_training
def test_steps_per_epoch():
    assert bench_training.steps_per_epoch(10, 3, 4) == 1500  # 36000 s / (2 * 3 s * 4)
    assert bench_training.steps_per_epoch(1, 7, 4) == 65  # rounded up


def test_bench_training_script_mode_rows(tmp_path):
    out = tmp_path / "training.json"
    rc = bench_training.main(["--device", "cpu", "--quick", "--models", "performer,convtasnet", "--segments", "0.125",
                              "--batch", "2", "--reps", "1", "--warmup", "0", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["suite"] == "training" and data["config"]["size"] == "tiny"
    assert [r["impl"] for r in data["rows"]] == ["performer", "convtasnet"]
    for r in data["rows"]:
        assert r["status"] == "ok" and r["ms"] > 0 and r["samples"] == 2000 and r["peak_mib"] is None
        assert r["min_per_epoch"] == pytest.approx(r["steps_per_epoch"] * r["ms"] / 60e3)


def test_out_of_memory_is_recorded_and_larger_segments_skipped(tmp_path, monkeypatch):
    real = bench_training.make_step

    def fake_make_step(model, mixture, references, **kw):
        if isinstance(model, bench_training.ConvTasNet):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(model, mixture, references, **kw)

    monkeypatch.setattr(bench_training, "make_step", fake_make_step)
    args = bench_training.parse_args(["--device", "cpu", "--quick", "--models", "performer,convtasnet", "--segments",
                                      "0.1,0.2", "--batch", "1", "--reps", "1", "--warmup", "0"])
    rows = bench_training.run(args)["rows"]
    status = {(r["impl"], r["segment_s"]): r["status"] for r in rows}
    assert status == {("performer", 0.1): "ok", ("convtasnet", 0.1): "oom", ("performer", 0.2): "ok",
                      ("convtasnet", 0.2): "oom"}
    assert [(r["impl"], r["segment_s"]) for r in rows] == [("performer", 0.1), ("performer", 0.2), ("convtasnet", 0.1),
                                                           ("convtasnet", 0.2)]  # ours first, then the anchor
    assert "skipped" in rows[-1]["note"] and "error" not in rows[2]


def test_bench_training_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench_training.parse_args(["--models", "performer,transformer"])
    with pytest.raises(SystemExit, match="--v100 needs --device cuda"):
        bench_training.run(bench_training.parse_args(["--device", "cpu", "--v100", "--quick"]))


# -------------------------------------------------------------------------------------------------- readme_table
def _training_suite():
    rows = [_row("performer", 20.0, 300.0, min_per_epoch=0.5), _row("sdpa", 25.0, 200.0, min_per_epoch=0.6),
            _row("convtasnet", 160.0, 8000.0, min_per_epoch=4.0),
            _row("performer", 30.0, 900.0, segment_s=30, min_per_epoch=0.1),
            _row("convtasnet", None, status="oom", segment_s=30)]
    v100 = [_row("performer", 30.0, segment_s=30), _row("convtasnet", None, status="oom", segment_s=30)]
    results = _results(rows)
    results["suites"]["training"]["result"].update(suite="training", config={"batch": 4, "amp": "bf16"})
    results["suites"]["training_v100"] = {"status": "ok", "result": {"suite": "training_v100", "rows": v100}}
    return results


def test_readme_table_in_the_papers_form(tmp_path):
    quality = [{"segment": 3.0, "minutes": 10, "card": "Test card", "entries": {
        "performer": {"summary": {"overall": {"one_to_one_sisnri": 4.25}}},
        "convtasnet": {"summary": {"overall": {"one_to_one_sisnri": -1.5}}},
        "oracle IRM (n_fft 1024, hop 256)": {"summary": {"overall": {"one_to_one_sisnri": 12.0}}}}}]
    text = readme_table.table(_training_suite(), quality)
    lines = text.splitlines()
    assert "Test card" in lines[0]
    row3 = next(line for line in lines if line.startswith("| 16 kHz | 3 s |"))
    assert "| 0.5 | 0.6 | 4.0 | 8.0× |" in row3 and "+4.25 / -1.50" in row3 and "+1.66 / -9.11" in row3
    row30 = next(line for line in lines if line.startswith("| 16 kHz | 30 s |"))
    assert "| OOM |" in row30 and "ConvTasNet OOM" in row30 and "yes / OOM" in row30 and "+3.52 / OOM" in row30
    assert readme_table.table({"steps": [], "benchmarks": _training_suite()}, quality) == text  # gpu_report.json
    readme_table.plot(_training_suite(), str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{readme_table.START}\nold table\n{readme_table.END}\ntail\n")
    readme_table.write_readme("| new |\n", str(readme))
    assert readme.read_text() == f"head\n{readme_table.START}\n| new |\n{readme_table.END}\ntail\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="needs exactly one"):
        readme_table.write_readme("x\n", str(readme))


def test_readme_table_cli_reports_unusable_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"suites": {}}))
    assert readme_table.main([str(bad)]) == 2
    assert "no training rows" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- profile_op
def test_profile_op_runs_each_op_and_writes_a_trace(tmp_path, capsys):
    trace = tmp_path / "trace.json"
    assert profile_op.main(["mixit_loss", "--shape", "B=1,M=4,T=999", "--dtype", "fp32", "--warmup", "0",
                            "--iters", "1", "--device", "cpu", "--torch-profiler", str(trace)]) == 0
    assert json.loads(trace.read_text())["traceEvents"]
    assert profile_op.main(["favor_attention", "--shape", "B=1,H=1,L=33,D=16,m=16", "--dtype", "fp32",
                            "--warmup", "0", "--iters", "1", "--device", "cpu"]) == 0
    assert "favor_attention B=1,H=1,L=33,D=16,m=16 fp32 on cpu: 1 calls" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        profile_op.main(["mixit_loss", "--shape", "Q=3"])


def test_gpu_check_script_parses():
    script = os.path.join(BENCH, "gpu_check.sh")
    assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0


def test_off_the_shelf_attention_baseline_computes_the_same_attention():
    pytest.importorskip("performer_pytorch")
    from trackformer.nn import FavorAttention

    attn = FavorAttention(64, 2, nb_features=32).eval()
    x = torch.randn(2, 50, 64)
    baseline = bench_training.OffTheShelfAttention(attn).eval()
    torch.testing.assert_close(baseline(x), attn(x), rtol=1e-4, atol=1e-5)


def test_run_all_shares_the_budget_in_proportion_to_suite_limits(tmp_path, monkeypatch):
    suites = (run_all.Suite("a", "a.py", quick_timeout=90), run_all.Suite("b", "b.py", quick_timeout=60),
              run_all.Suite("gpu", "g.py", quick_timeout=500, cuda_only=True),
              run_all.Suite("c", "c.py", quick_timeout=150))
    given = {}

    def fake_run_suite(suite, *, timeout, **kw):
        given[suite.name] = timeout
        return {"status": "skipped: needs CUDA" if suite.cuda_only else "ok", "result": None}

    monkeypatch.setattr(run_all, "SUITES", suites)
    monkeypatch.setattr(run_all, "run_suite", fake_run_suite)
    assert run_all.main(["--device", "cpu", "--quick", "--budget-s", "100", "--out-dir", str(tmp_path)]) == 0
    assert given["a"] == pytest.approx(100 * 90 / 300, abs=0.5)  # the CUDA-only suite takes no share on a CPU
    assert given["b"] == pytest.approx(100 * 60 / 210, abs=0.5)  # unused time flows on
    assert given["c"] == pytest.approx(100, abs=0.5)
    assert json.loads((tmp_path / "results.json").read_text())["suites"]["c"]["status"] == "ok"
    assert (tmp_path / "report.md").exists()


# ----------------------------------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_v100_mode_reports_convtasnet_oom_at_30_s_on_cuda(tmp_path):
    """ANCHORS.md: ConvTasNet, 16 kHz, batch 4 needs 8.7 GB at 3 s and 87 GB at 30 s, so under the V100 cap the
    first fits and the second runs out of memory; the run must record both and exit 0. In a subprocess: the
    memory cap is process-wide."""
    out = tmp_path / "v100.json"
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_training.py"), "--device", "cuda", "--v100",
                           "--models", "convtasnet", "--rates", "16000", "--segments", "3,30", "--reps", "1",
                           "--warmup", "0", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "oom"], rows
    assert rows[0]["reserved_peak_mib"] < bench_training.V100_CAP_MIB and rows[0]["peak_mib"] > 1000


@pytest.mark.gpu
def test_profile_op_on_cuda_records_kernels(tmp_path):
    trace = tmp_path / "trace.json"
    assert profile_op.main(["mixit_loss", "--shape", "B=2,T=44100", "--dtype", "fp32", "--warmup", "1",
                            "--iters", "2", "--device", "cuda", "--torch-profiler", str(trace)]) == 0
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("cat") == "kernel" for e in events)


# ------------------------------------------------------------------------------------------- rows and suites
def test_row_line_prints_case_and_metrics_or_the_reason():
    from common import row_line

    ok = {"impl": "ours", "status": "ok", "L": 517, "dtype": "bf16", "ms": 1.23456, "peak_mib": None}
    assert row_line(ok, ("dtype", "L"), (("ms", "{:.2f} ms"), ("peak_mib", "{:.0f} MiB"))).split() == [
        "ours", "dtype=bf16", "L=517", "1.23", "ms"]
    skipped = {"impl": "sdpa-flash", "status": "skipped", "L": 5, "note": "fp16/bf16 only"}
    assert row_line(skipped, ("L",), ()).endswith("L=5  skipped: fp16/bf16 only")


def test_suite_fails_only_for_our_errors():
    from common import suite_exit_code

    assert suite_exit_code({"rows": [{"ours": False, "status": "error"}, {"ours": True, "status": "ok"}]}) == 0
    assert suite_exit_code({"rows": [{"ours": True, "status": "error"}]}) == 1


def test_forced_sdpa_backend_without_a_kernel_is_skipped_with_the_reason():
    import bench_attention

    row = bench_attention.measure("sdpa-cudnn", length=16, dtype_name="fp32", device="cpu", warmup=0, reps=1)
    assert row["status"] == "skipped" and row["note"].startswith("sdpa-cudnn has no kernel for these inputs")
    args = bench_attention.parse_args(["--device", "cpu", "--quick"])
    order = [impl for _, _, impl in bench_attention.plan(args)]
    assert order[0] == "ours" and "performer-pytorch-compiled" not in order


def test_attention_plan_puts_the_slowest_anchors_last():
    import types

    import bench_attention

    rows = bench_attention.plan(types.SimpleNamespace(device="cuda", quick=True, impls=list(bench_attention.IMPLS)))
    first_anchor = next(i for i, r in enumerate(rows) if r[2] != "ours")
    assert all(r[2] == "ours" for r in rows[:first_anchor]) and len(rows[:first_anchor]) == 4
    compiled = rows.index(("bf16", 5168, "performer-pytorch-compiled"))
    assert all(r[1] != 65536 for r in rows[first_anchor:compiled]) and all(r[1] == 65536 for r in rows[compiled + 1:])


# ------------------------------------------------------------------------------------------------ gpu_check
def test_gpu_check_steps_wheels_and_skips(capsys):
    import gpu_check_steps

    assert gpu_check_steps.main(["wheels", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "soundfile" in out and "einops" in out
    assert gpu_check_steps.main(["pytest", "--require-module", "no_such_module_xyz", "--", "-q"]) == 77
    assert gpu_check_steps.main(["ops", "--dry-run"]) == 0
    assert "trackformer::mixit_stats CPU=yes" in capsys.readouterr().out


def test_gpu_check_site_makes_autotuning_cheap():
    pytest.importorskip("triton")
    from triton.backends.nvidia.driver import CudaDriver

    before = CudaDriver.get_benchmarker
    try:
        import importlib.util

        path = os.path.join(BENCH, "gpu_check_site", "sitecustomize.py")
        spec = importlib.util.spec_from_file_location("_gpu_check_site", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        bench = CudaDriver.get_benchmarker(None)
        assert bench.keywords == {"warmup": 5, "rep": 20}
    finally:
        CudaDriver.get_benchmarker = before


def test_gpu_report_shows_diagnostic_logs(tmp_path):
    log = tmp_path / "ops.log"
    log.write_text("trackformer::mixit_stats CPU=yes CUDA=yes Meta=yes\n")
    steps = tmp_path / "steps.tsv"
    steps.write_text(f"ops\tok\t2\t{log}\n")
    assert report.main(["--steps", str(steps), "--gpu-report", str(tmp_path), "--show-logs", "ops,profile-favor"]) == 0
    md = (tmp_path / "gpu_report.md").read_text()
    assert "## Diagnostics" in md and "mixit_stats CPU=yes CUDA=yes" in md
    assert json.loads((tmp_path / "gpu_report.json").read_text())["diagnostics"]["ops"].startswith("trackformer::")
