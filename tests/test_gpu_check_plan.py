"""gpu_check.sh's plan: run_all.py --plan (suite limits, headline rows, their sum = the benchmarks' floor), the Triton
build count of the FAVOR+ GPU tests, and the toolchain's setuptools check."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import gpu_check_steps  # noqa: E402
import run_all  # noqa: E402


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_run_all_plan_prints_limits_headlines_and_their_sum(device, capsys):
    assert run_all.main(["--device", device, "--quick", "--plan"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    runs = [s for s in run_all.SUITES if device == "cuda" or not s.cuda_only]
    assert int(lines[-1]) == sum(s.quick_timeout for s in runs)
    for suite in runs:
        assert any(line.split()[:2] == [suite.name, str(suite.quick_timeout)] and suite.headline in line
                   for line in lines)
    assert ("training_v100  skipped (needs CUDA)" in "\n".join(lines)) == (device == "cpu")


def test_training_suites_take_the_headline_segments_on_cuda_only():
    training = {s.name: s for s in run_all.SUITES}["training"]
    assert training.cuda_extra == ("--segments", "3,5,10,30") and "--segments" not in training.extra


def test_favor_builds_cover_every_kernel_once_per_configuration(capsys):
    classes, builds = gpu_check_steps.favor_builds()
    kernels = {key[0] for key in builds}
    assert kernels == {"_kv_partial_kernel", "_kv_reduce_kernel", "_attend_kernel", "_attend_staged_kernel",
                       "_dstate_kernel", "_dq_kernel", "_dkv_kernel"}
    assert set(builds.values()) <= set(classes)
    assert len(builds) < 6 * len(classes)  # classes share builds (one per kernel configuration, not per call)
    assert gpu_check_steps.main(["builds"]) == 0
    assert f"FAVOR+ GPU tests: {len(builds)} Triton builds for {len(classes)} (dtype, D, m) classes" in \
        capsys.readouterr().out


def test_toolchain_fails_in_one_line_below_setuptools_77(monkeypatch, capsys):
    import setuptools

    monkeypatch.setattr(setuptools, "__version__", "75.8.0")
    assert gpu_check_steps.main(["toolchain"]) == 1
    out = capsys.readouterr().out
    assert "setuptools 75.8.0 from" in out
    assert [line for line in out.splitlines() if line.startswith("gpu_check: ")] == [
        'gpu_check: setuptools 75.8.0 < 77 cannot read pyproject.toml\'s license = "MIT" (no _C would be built); '
        "carry setuptools 80.9.0 with `../shared/tools/fetch_gpu_wheels.sh .whl`"]
