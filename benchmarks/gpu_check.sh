#!/usr/bin/env bash
# The one script a session with a lent GPU runs, from the repository root (see benchmarks/README.md):
#
#   ../shared/tools/fetch_gpu_wheels.sh .whl            # here, once: the wheels the GPU image lacks
#   bash benchmarks/gpu_check.sh                        # on the GPU machine, carrying .whl; results in $OUT
#   OUT=/tmp/x DRY_RUN_CPU=1 bash benchmarks/gpu_check.sh   # local rehearsal: every step that works on a CPU
#
# The plan (printed first): the benchmarks keep a floor, BENCH_FLOOR_S = the sum of run_all.py's suite limits,
# so the steps before them share GPU_CHECK_BUDGET_S - RESERVE - BENCH_FLOOR_S, each at most its own limit; time
# they leave goes to the benchmarks. A step whose limit comes out under 5 s is skipped (never `timeout 0`).
# Steps (each under `timeout` in its own process group, its status, seconds and log recorded; a failed step
# never stops the others, except a carried wheel that does not import, which ends the run at once):
#   environment     python, torch, CUDA, numpy, triton versions, the card
#   nvidia-smi      the card (skipped in a dry run)
#   wheels          pip install --no-index --no-deps --target WORK/site .whl/*.whl, then every carried package
#                   must import (gpu_check_steps.py wheels); missing .whl or a failed import ends the run early
#   toolchain       setuptools (>= 77, the carried one), nvcc and ninja versions, CUDA_HOME; fails on setuptools
#                   < 77 or a CUDA major version other than torch's
#   build           FORCE_CUDA=1 setup.py build_ext into WORK/build for the card's architecture (CPU-only in a dry
#                   run), in the background, never writing the working tree ...
#   warm-triton     ... while 8 processes compile the Triton builds the FAVOR+ GPU tests need (counted in the
#                   plan) into the run's TRITON_CACHE_DIR (a dry run: one class under the interpreter) ...
#   favor-tests     ... and pytest -m gpu runs tests/test_favor_*.py on that cache (Triton only: no _C needed)
#   ops             the package shim WORK/pkg/trackformer (symlinks to trackformer/*, kernels -> ../kernels, the
#                   new _C) imports, and every MixIT op has CPU, Meta and CUDA kernels registered
#   gpu-tests       pytest -m gpu over the other test files (tests get ~300 s in all, 150 s per test at most)
#   convtasnet-parity  ours vs torchaudio's ConvTasNet; fails (not skips) when torchaudio imports
#   profile-favor, profile-mixit   per-kernel time tables (benchmarks/profile_op.py --torch-profiler)
#   benchmarks      benchmarks/run_all.py --quick with what is left of the budget (slowest anchor rows last)
#   readme-table    benchmarks/readme_table.py: the README results table and plot
#   orphans         no process started by this run is left running
# Every Python process gets Triton's autotuning cached and printed (TRITON_CACHE_AUTOTUNING=1,
# TRITON_PRINT_AUTOTUNING=1) and cheap (benchmarks/gpu_check_site/sitecustomize.py: do_bench 5 + 20 ms).
# Output, flat, in $OUT (default /tmp/gpu_check_out): gpu_report.md, gpu_report.json, gpu_check.log (every step's
# log), readme_table.md, results_plot.png. The whole run stays under GPU_CHECK_BUDGET_S (default 530 s).
# Exit status: 0 when every step is ok (or skipped for a stated reason), 1 otherwise.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/gpu_check_out}
DRY=${DRY_RUN_CPU:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-530}
RESERVE=25  # seconds kept for readme-table and the report
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
[[ $PY == */* ]] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # the steps run from $WORK
if [ "$DRY" = 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
STEPS_PY="$REPO/benchmarks/gpu_check_steps.py"
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1 TRITON_PRINT_AUTOTUNING=1
export TRITON_CACHE_DIR="$WORK/triton-cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor-cache"
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
[ -n "${CUDA_HOME:-}" ] && export PATH="$CUDA_HOME/bin:$PATH"

left() { echo $((BUDGET - ($(date +%s) - START))); }

# record NAME STATUS SECONDS: a failed step's status carries its log's last "gpu_check: ..." line, if any.
record() {
  local status=$2 why
  if [[ $status == failed* ]]; then
    why=$(grep '^gpu_check: ' "$WORK/$1.log" 2>/dev/null | tail -1 | sed 's/^gpu_check: //' | tr '\t' ' ')
    [ -n "$why" ] && status="$status: $why"
  fi
  printf '%s\t%s\t%s\t%s\n' "$1" "$status" "$3" "$WORK/$1.log" >>"$STEPS"
  echo "gpu_check: $1: $status (${3} s)"
}

skip() { echo "skipped: $2" >"$WORK/$1.log"; printf '\n===== %s: skipped: %s\n' "$1" "$2" >>"$LOG"; record "$1" "skipped: $2" 0; }

FLOOR=0  # seconds kept for the benchmarks while the steps before them run (BENCH_FLOOR_S, set by the plan)

# limit NAME LIMIT_S: the step's timeout, never past the budget nor into the benchmarks' floor (0 when under 5 s:
# the step is then skipped, never run as `timeout 0`, which would mean no limit).
limit() {
  local t
  t=$(($(left) - RESERVE - FLOOR))
  [ "$t" -gt "$2" ] && t=$2
  [ "$t" -lt 5 ] && t=0
  echo "$t"
}

# status RC LIMIT: the step table's words for an exit code (77: skipped, the log's last line says why).
status_of() {
  case $1 in
    0) echo ok ;;
    77) echo "skipped: $(tail -1 "$WORK/$3.log" | tr '\t' ' ')" ;;
    124 | 137) echo "timeout after ${2} s" ;;
    *) echo "failed (exit $1)" ;;
  esac
}

# step NAME LIMIT_S CMD...: runs CMD from $WORK under `timeout` (its own process group, killed whole: TERM, then
# KILL 15 s later), never longer than the budget allows. Returns CMD's exit code.
step() {
  local name=$1 t s rc
  t=$(limit "$1" "$2")
  shift 2
  printf '\n===== %s (timeout %s s): %s\n' "$name" "$t" "$*" >>"$LOG"
  if [ "$t" = 0 ]; then
    echo "skipped: time budget spent" >"$WORK/$name.log"
    record "$name" "skipped: time budget spent" 0
    return 1
  fi
  s=$(date +%s)
  (cd "$WORK" && timeout -k 15 "$t" "$@") >"$WORK/$name.log" 2>&1
  rc=$?
  cat "$WORK/$name.log" >>"$LOG"
  record "$name" "$(status_of $rc "$t" "$name")" $(($(date +%s) - s))
  return $rc
}

# start NAME LIMIT_S CMD... / finish NAME: the same, in the background (one at a time).
BG_PID= BG_NAME= BG_START= BG_LIMIT=
start() {
  BG_NAME=$1 BG_LIMIT=$(limit "$1" "$2") BG_START=$(date +%s)
  shift 2
  if [ "$BG_LIMIT" = 0 ]; then
    echo "skipped: time budget spent" >"$WORK/$BG_NAME.log"
    BG_PID=
    return 1
  fi
  printf '\n===== %s (background, timeout %s s): %s\n' "$BG_NAME" "$BG_LIMIT" "$*" >>"$WORK/bg-header.log"
  (cd "$WORK" && exec timeout -k 15 "$BG_LIMIT" "$@") >"$WORK/$BG_NAME.log" 2>&1 &
  BG_PID=$!
}
finish() {
  local rc
  if [ -z "$BG_PID" ]; then record "$BG_NAME" "skipped: time budget spent" 0; return 1; fi
  wait "$BG_PID"
  rc=$?
  cat "$WORK/bg-header.log" "$WORK/$BG_NAME.log" >>"$LOG"
  : >"$WORK/bg-header.log"
  record "$BG_NAME" "$(status_of $rc "$BG_LIMIT" "$BG_NAME")" $(($(date +%s) - BG_START))
  BG_PID=
  return $rc
}
# If this script is stopped, its background step goes with it (timeout passes the signal to its group).
trap '[ -n "$BG_PID" ] && kill -TERM "$BG_PID" 2>/dev/null' EXIT
trap 'exit 143' TERM INT

# report: gpu_report.md/.json from the step table and whatever benchmarks wrote; the last resort is the table.
report() {
  local rc
  (cd "$WORK" && timeout 30 "$PY" "$REPO/benchmarks/report.py" --steps "$STEPS" --results "$WORK/bench/results.json" \
    --gpu-report "$OUT" --show-logs toolchain,wheels,ops,profile-favor,profile-mixit) >>"$LOG" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    { echo "# gpu_check report (report.py failed, exit $rc; see gpu_check.log)"; echo
      echo '| step | status | seconds |'; echo '|---|---|---|'
      awk -F'\t' '{print "| " $1 " | " $2 " | " $3 " |"}' "$STEPS"; } >"$OUT/gpu_report.md"
  fi
  return $rc
}

# finish_run: the report, the flat-output check, the exit status.
finish_run() {
  local rc bad extra
  report
  rc=$?
  extra=
  if [ -n "$(find "$OUT" -mindepth 1 -type d)" ] || [ "$(find "$OUT" -mindepth 1 | wc -l)" -gt 8 ]; then
    extra=$(find "$OUT" -mindepth 1 | tr '\n' ' ')
    echo "gpu_check: $OUT must hold at most 8 flat files, it holds: $extra" | tee -a "$LOG"
  fi
  echo "gpu_check: $(($(date +%s) - START)) s in all; report in $OUT/gpu_report.md"
  head -40 "$OUT/gpu_report.md"
  bad=$(awk -F'\t' '$2 != "ok" && ($2 !~ /^skipped: / || $2 ~ /^skipped: time budget/) {print $1}' "$STEPS")
  if [ "$DRY" != 1 ]; then rm -rf "$WORK"; else echo "gpu_check: dry-run work folder kept: $WORK"; fi
  if [ $rc -ne 0 ] || [ -n "$bad" ] || [ -n "$extra" ]; then
    echo "gpu_check: not ok: ${bad//$'\n'/ }"
    exit 1
  fi
  exit 0
}

# --- the plan --------------------------------------------------------------------------------------------------
# Each step's own limit (s); the steps before the benchmarks share what the benchmarks' floor leaves.
declare -A CAP=([environment]=30 [nvidia-smi]=15 [wheels]=90 [toolchain]=20 [build]=240 [warm-triton]=60
  [favor-tests]=90 [ops]=20 [gpu-tests]=150 [convtasnet-parity]=45 [profile-favor]=30 [profile-mixit]=20
  [readme-table]=20)
# GPU_CHECK_CAP_SCALE (default 1) multiplies every step's limit: for a rehearsal on a slow or shared CPU, with a
# budget to match (GPU_CHECK_BUDGET_S); the GPU run keeps 1.
for name in "${!CAP[@]}"; do CAP[$name]=$((CAP[$name] * ${GPU_CHECK_CAP_SCALE:-1})); done
ORDER="environment nvidia-smi wheels toolchain build warm-triton favor-tests ops gpu-tests convtasnet-parity
  profile-favor profile-mixit benchmarks readme-table"
plan() {
  local suites gpu
  suites=$(cd "$WORK" && "$PY" "$REPO/benchmarks/run_all.py" --device "$DEVICE" --quick --plan) || return 1
  BENCH_FLOOR_S=$(($(echo "$suites" | tail -1) + 10))  # + 10 s: the suites' process start-ups
  echo "gpu_check plan: budget $BUDGET s = $((BUDGET - RESERVE - BENCH_FLOOR_S)) s for the steps before the" \
    "benchmarks + a ${BENCH_FLOOR_S} s floor for the benchmarks + ${RESERVE} s for readme-table and the report"
  for name in $ORDER; do
    case $name in
      build) echo "  build             ${CAP[build]} s  (background, beside warm-triton and favor-tests) _C for the MixIT ops" ;;
      warm-triton) echo "  warm-triton        ${CAP[warm-triton]} s  (the Triton builds of the FAVOR+ GPU tests: counted below)" ;;
      benchmarks) echo "  benchmarks     >= ${BENCH_FLOOR_S} s  run_all.py --quick, each suite its whole limit:"
        echo "$suites" | sed '$d' | sed 's/^/    /'
        if [ "$DRY" = 1 ]; then  # what the GPU run will keep for them
          gpu=$(cd "$WORK" && "$PY" "$REPO/benchmarks/run_all.py" --device cuda --quick --plan) || return 1
          echo "    on the GPU (budget 530 s): a $(($(echo "$gpu" | tail -1) + 10)) s floor for the benchmarks, so" \
            "$((530 - RESERVE - $(echo "$gpu" | tail -1) - 10)) s for the steps before them:"
          echo "$gpu" | sed '$d' | sed 's/^/    /'
        fi ;;
      *) printf '  %-17s %3s s\n' "$name" "${CAP[$name]}" ;;
    esac
  done
}
BENCH_FLOOR_S=0
plan >"$WORK/plan.txt" 2>&1 || echo "gpu_check: run_all.py --plan failed: no floor kept for the benchmarks" >>"$WORK/plan.txt"
tee -a "$LOG" <"$WORK/plan.txt"
FLOOR=$BENCH_FLOOR_S

# --- environment -------------------------------------------------------------------------------------------
step environment "${CAP[environment]}" "$PY" "$STEPS_PY" environment
if [ "$DRY" = 1 ]; then skip nvidia-smi "DRY_RUN_CPU"
elif command -v nvidia-smi >/dev/null; then step nvidia-smi "${CAP[nvidia-smi]}" nvidia-smi
else skip nvidia-smi "nvidia-smi not on PATH"; fi

# --- carried wheels: without them 10 test modules fail at collection, so a missing one ends the run now -------
if [ "$DRY" = 1 ]; then
  step wheels "${CAP[wheels]}" "$PY" "$STEPS_PY" wheels --dry-run
elif compgen -G "$REPO/.whl/*.whl" >/dev/null; then
  step wheels "${CAP[wheels]}" bash -c "'$PY' -m pip install -q --no-index --no-deps --no-compile --target '$WORK/site' \
    '$REPO'/.whl/*.whl && PYTHONPATH='$WORK/site' '$PY' '$STEPS_PY' wheels"
else
  echo "gpu_check: no .whl/*.whl in the working tree: run ../shared/tools/fetch_gpu_wheels.sh .whl and carry .whl" \
    >"$WORK/wheels.log"
  cat "$WORK/wheels.log" >>"$LOG"
  record wheels "failed (exit 1)" 0
fi
if [ "$(awk -F'\t' '$1 == "wheels" {print $2}' "$STEPS")" != ok ]; then
  echo "gpu_check: the carried wheels are not usable; ending the run early (fix .whl and run again)"
  finish_run
fi
[ "$DRY" = 1 ] || export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
# The package shim first (trackformer + trackformer.kernels + the new _C, without installing), then the
# cheap-autotuning sitecustomize.
export PYTHONPATH="$WORK/pkg:$REPO/benchmarks/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK/pkg/trackformer"
for entry in "$REPO"/trackformer/*; do
  case $(basename "$entry") in __pycache__ | _C.*.so | kernels) continue ;; esac
  ln -s "$entry" "$WORK/pkg/trackformer/"
done
ln -s "$REPO/kernels" "$WORK/pkg/trackformer/kernels"
# The carried setuptools (>= 77, for pyproject's SPDX license) now comes first: the build below uses it.
step toolchain "${CAP[toolchain]}" "$PY" "$STEPS_PY" toolchain
echo "gpu_check plan: $(cd "$WORK" && "$PY" "$STEPS_PY" builds 2>&1 | tail -1)" | tee -a "$LOG"

# --- build the extension in the background while the Triton tests run ------------------------------------------
if [ "$DRY" = 1 ]; then BUILD_ENV="FORCE_CUDA=0"
else
  ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  BUILD_ENV="FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-${ARCH:-9.0}} MAX_JOBS=${MAX_JOBS:-8}"
fi
start build "${CAP[build]}" bash -c "cd '$REPO' && env $BUILD_ENV '$PY' setup.py -q build_ext --build-lib '$WORK/build' \
  --build-temp '$WORK/build-tmp'"
PYTEST=("$PY" "$STEPS_PY" pytest --timeout 150 -- -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml"
  --continue-on-collection-errors)
if [ "$DRY" = 1 ]; then WARM=(--dry-run --workers 1); else WARM=(--workers 8); fi
step warm-triton "${CAP[warm-triton]}" "$PY" "$STEPS_PY" warm-triton "${WARM[@]}"
step favor-tests "${CAP[favor-tests]}" "${PYTEST[@]}" -m gpu "$REPO"/tests/test_favor_*.py
finish build
for so in "$WORK"/build/trackformer/_C.*.so; do [ -e "$so" ] && ln -s "$so" "$WORK/pkg/trackformer/"; done
if [ "$DRY" = 1 ]; then OPS=(--dry-run); else OPS=(); fi
step ops "${CAP[ops]}" "$PY" "$STEPS_PY" ops "${OPS[@]}"

# --- the other GPU tests, then the torchaudio parity ------------------------------------------------------------
step gpu-tests "${CAP[gpu-tests]}" "${PYTEST[@]}" -m gpu "$REPO/tests" --ignore-glob='*/test_favor_*.py'
step convtasnet-parity "${CAP[convtasnet-parity]}" "$PY" "$STEPS_PY" pytest --require-module torchaudio -- -q -rs -p no:cacheprovider \
  --rootdir "$REPO" -c "$REPO/pyproject.toml" "$REPO/tests/test_convtasnet.py" -k torchaudio

# --- diagnostics: per-kernel time tables --------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  FAVOR_SHAPE="B=1,H=2,L=517,D=64,m=64" MIXIT_SHAPE="B=2,T=44100" DTYPE=fp32
else
  FAVOR_SHAPE="L=5168" MIXIT_SHAPE="T=1323000" DTYPE=bf16
fi
step profile-favor "${CAP[profile-favor]}" "$PY" "$REPO/benchmarks/profile_op.py" favor_attention --device "$DEVICE" --shape "$FAVOR_SHAPE" \
  --dtype "$DTYPE" --warmup 2 --iters 3 --torch-profiler "$WORK/favor_trace.json"
step profile-mixit "${CAP[profile-mixit]}" "$PY" "$REPO/benchmarks/profile_op.py" mixit_loss --device "$DEVICE" --shape "$MIXIT_SHAPE" \
  --dtype fp32 --warmup 2 --iters 3 --torch-profiler "$WORK/mixit_trace.json"

# --- benchmarks (run_all kills a suite's whole process group on timeout or when stopped) ------------------------
FLOOR=0  # their floor is theirs now, with whatever the steps before left
step benchmarks 600 "$PY" "$REPO/benchmarks/run_all.py" --device "$DEVICE" --quick --out-dir "$WORK/bench" \
  --log-dir "$WORK/bench-logs" --budget-s $(($(left) - RESERVE - 20))
for f in "$WORK"/bench-logs/*.log; do [ -e "$f" ] && printf '\n----- %s\n' "$f" >>"$LOG" && cat "$f" >>"$LOG"; done

# --- README table + plot, leftovers, then the report (always) ---------------------------------------------------
RESERVE=5
if [ -f "$WORK/bench/results.json" ]; then
  step readme-table "${CAP[readme-table]}" "$PY" "$REPO/benchmarks/readme_table.py" "$WORK/bench/results.json" \
    --plot "$OUT/results_plot.png" --output "$OUT/readme_table.md"
else
  skip readme-table "no benchmarks/results.json"
fi
left_over=$(pgrep -f -- "$WORK/" | grep -v -x -e "$$" || true)
if [ -n "$left_over" ]; then
  { echo "gpu_check: processes of this run still running (killed now):"; ps -o pid,pgid,etime,args -p "${left_over//$'\n'/,}"; } \
    >"$WORK/orphans.log" 2>&1
  kill -KILL $left_over 2>/dev/null
  cat "$WORK/orphans.log" >>"$LOG"
  record orphans "failed (exit 1)" 0
else
  echo "none" >"$WORK/orphans.log"
  record orphans ok 0
fi
RESERVE=0
finish_run
