#!/usr/bin/env bash
# The one script a session with a lent GPU runs, from the repository root:
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine; results in $OUT
#   OUT=/tmp/x DRY_RUN_CPU=1 bash benchmarks/gpu_check.sh   # local dry run: every step that works on a CPU
#
# Steps (each with a `timeout`, its status, seconds and log recorded; a failed step never stops the script):
#   environment   python, torch, CUDA, triton versions
#   nvidia-smi    the card (skipped in a dry run)
#   wheels        pip install --no-index --no-deps --target WORK/site .whl/*.whl, if .whl/ holds wheels
#                 (benchmark-only anchors from shared/tools/fetch_gpu_wheels.sh; soundfile + cffi + pycparser
#                 for the tests that read audio: the GPU image lacks them), then PYTHONPATH=WORK/site
#   build         FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 python setup.py build_ext into WORK/build (CPU-only
#                 extension in a dry run), so the working tree is never written to
#   import        `trackformer` from a package shim WORK/pkg/trackformer: symlinks to every entry of
#                 trackformer/, plus kernels -> ../kernels (what setup.py's package_dir does when installed)
#                 and the freshly built _C; PYTHONPATH=WORK/pkg. Python commands run from WORK so the
#                 repository root (which holds a trackformer/ without kernels/) is not on sys.path.
#   gpu-tests     pytest -m gpu over tests/ (the package imported from the shim first)
#   convtasnet-parity  our ConvTasNet vs torchaudio's (installed on the GPU image) with the same weights
#   benchmarks    benchmarks/run_all.py --quick (attention, mixit, training, training_v100) with what is left
#   readme-table  benchmarks/readme_table.py: the README results table and plot
#   report        $OUT/gpu_report.md and $OUT/gpu_report.json (steps + all benchmark results)
# Output in $OUT (default /tmp/gpu_check_out): gpu_report.md, gpu_report.json, gpu_check.log (every step's
# log), readme_table.md, results_plot.png. The whole run stays under GPU_CHECK_BUDGET_S (default 470 s).
# Exit status: 0 when every step is ok (or skipped for a stated reason), 1 otherwise.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/gpu_check_out}
DRY=${DRY_RUN_CPU:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
RESERVE=25  # seconds kept for readme-table and report
START=$(date +%s)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)  # absolute: the steps run from $WORK
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
LOG="$OUT/gpu_check.log"
STEPS="$WORK/steps.tsv"
: >"$LOG"
: >"$STEPS"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ "$DRY" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
if [ "$DRY" = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
export PYTHONUNBUFFERED=1

left() { echo $((BUDGET - ($(date +%s) - START))); }

# record NAME STATUS SECONDS
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$WORK/$1.log" >>"$STEPS"; echo "gpu_check: $1: $2 (${3} s)"; }

# step NAME LIMIT_S CMD...: runs CMD under `timeout`, never longer than the budget allows, from $WORK.
step() {
  local name=$1 limit=$2 t s rc status
  shift 2
  t=$(($(left) - RESERVE))
  [ "$t" -gt "$limit" ] && t=$limit
  {
    echo
    echo "===== $name (timeout ${t} s): $*"
  } >>"$LOG"
  if [ "$t" -lt 5 ]; then
    echo "skipped: time budget spent" >"$WORK/$name.log"
    cat "$WORK/$name.log" >>"$LOG"
    record "$name" "skipped: time budget spent" 0
    return 1
  fi
  s=$(date +%s)
  (cd "$WORK" && timeout -k 10 "$t" "$@") >"$WORK/$name.log" 2>&1
  rc=$?
  cat "$WORK/$name.log" >>"$LOG"
  case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${t} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  record "$name" "$status" $(($(date +%s) - s))
  return $rc
}

skip() { echo "skipped: $2" >"$WORK/$1.log"; printf '\n===== %s: skipped: %s\n' "$1" "$2" >>"$LOG"; record "$1" "skipped: $2" 0; }

# --- environment -------------------------------------------------------------------------------------------
step environment 60 "$PY" -c "
import sys, torch
print('python', sys.version.split()[0], sys.executable)
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('device', p.name, round(p.total_memory / 2**30, 1), 'GiB', p.multi_processor_count, 'SMs')
try:
    import triton; print('triton', triton.__version__)
except ImportError as e:
    print('triton missing:', e)
"

if [ "$DRY" = 1 ]; then skip nvidia-smi "DRY_RUN_CPU"
elif command -v nvidia-smi >/dev/null; then step nvidia-smi 20 nvidia-smi
else skip nvidia-smi "nvidia-smi not on PATH"; fi

# --- carried wheels ----------------------------------------------------------------------------------------
export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" = 1 ]; then
  skip wheels "DRY_RUN_CPU (carried wheels target the GPU image's Python 3.12; this venv has its own packages)"
elif compgen -G "$REPO/.whl/*.whl" >/dev/null; then
  step wheels 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" \
    "$REPO"/.whl/*.whl && export PYTHONPATH="$PYTHONPATH:$WORK/site"
else
  skip wheels "no .whl/*.whl in the working tree (anchors needing performer-pytorch/asteroid will skip)"
fi

# --- build the extension against this machine's torch --------------------------------------------------------
if [ "$DRY" = 1 ]; then BUILD_ENV=(env FORCE_CUDA=0)
else BUILD_ENV=(env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}"); fi
step build 180 bash -c "cd '$REPO' && ${BUILD_ENV[*]} '$PY' setup.py -q build_ext \
  --build-lib '$WORK/build' --build-temp '$WORK/build-tmp'"

# --- package shim: trackformer + trackformer.kernels + the new _C, without installing -------------------------
mkdir -p "$WORK/pkg/trackformer"
for entry in "$REPO"/trackformer/*; do
  case $(basename "$entry") in __pycache__ | _C.*.so | kernels) continue ;; esac
  ln -s "$entry" "$WORK/pkg/trackformer/"
done
ln -s "$REPO/kernels" "$WORK/pkg/trackformer/kernels"
for so in "$WORK"/build/trackformer/_C.*.so; do [ -e "$so" ] && ln -s "$so" "$WORK/pkg/trackformer/"; done
step import 60 "$PY" -c "
import torch, trackformer, trackformer.kernels
from trackformer import _ext
_ext.ops()
print('trackformer from', trackformer.__file__, '| kernels from', trackformer.kernels.__file__)
for op in sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith('trackformer::')):
    print(op, 'CUDA kernel:', torch._C._dispatch_has_kernel_for_dispatch_key(op, 'CUDA'))
"

# --- GPU tests -----------------------------------------------------------------------------------------------
# pytest puts the repository root (the root conftest.py's folder) first on sys.path, where trackformer/ has no
# kernels/ and no CUDA _C: import the package from the shim before pytest starts, so sys.modules keeps the shim's.
PYTEST_VIA_SHIM="import sys, torch, trackformer, trackformer.kernels, trackformer.mixit, pytest; \
sys.exit(pytest.main(sys.argv[1:]))"
step gpu-tests 200 "$PY" -c "$PYTEST_VIA_SHIM" "$REPO/tests" -m gpu -q -p no:cacheprovider --rootdir "$REPO" \
  -c "$REPO/pyproject.toml" --continue-on-collection-errors
# The GPU image has torchaudio: check our ConvTasNet against torchaudio's with the same weights.
step convtasnet-parity 60 "$PY" -c "$PYTEST_VIA_SHIM" "$REPO/tests/test_convtasnet.py" -k torchaudio -q -rs \
  -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml"

# --- benchmarks ----------------------------------------------------------------------------------------------
bench_budget=$(($(left) - RESERVE - 10))
step benchmarks 600 "$PY" "$REPO/benchmarks/run_all.py" --device "$DEVICE" --quick --out-dir "$WORK/bench" \
  --log-dir "$WORK/bench-logs" --budget-s "$bench_budget"
for f in "$WORK"/bench-logs/*.log; do [ -e "$f" ] && printf '\n----- %s\n' "$f" >>"$LOG" && cat "$f" >>"$LOG"; done

# --- README table + plot, then the report (always) -----------------------------------------------------------
if [ -f "$WORK/bench/results.json" ]; then
  RESERVE=0 step readme-table 20 "$PY" "$REPO/benchmarks/readme_table.py" "$WORK/bench/results.json" \
    --plot "$OUT/results_plot.png" --output "$OUT/readme_table.md"
else
  skip readme-table "no benchmarks/results.json"
fi
RESERVE=0
(cd "$WORK" && "$PY" "$REPO/benchmarks/report.py" --steps "$STEPS" --results "$WORK/bench/results.json" \
  --gpu-report "$OUT") >>"$LOG" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  # Last resort: the step table alone, so the run is never silent.
  { echo "# gpu_check report (report.py failed, exit $rc; see gpu_check.log)"; echo
    echo '| step | status | seconds |'; echo '|---|---|---|'
    awk -F'\t' '{print "| " $1 " | " $2 " | " $3 " |"}' "$STEPS"; } >"$OUT/gpu_report.md"
fi
echo "gpu_check: $(($(date +%s) - START)) s in all; report in $OUT/gpu_report.md"
cat "$OUT/gpu_report.md" | head -40
if [ "$DRY" != 1 ]; then rm -rf "$WORK"; else echo "gpu_check: dry-run work folder kept: $WORK"; fi
if [ $rc -ne 0 ] || awk -F'\t' '$2 != "ok" && $2 !~ /^skipped: (DRY_RUN_CPU|no \.whl)/ {bad=1} END {exit !bad}' "$STEPS"; then
  exit 1
fi
exit 0
