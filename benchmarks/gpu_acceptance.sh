#!/usr/bin/env bash
# The GPU acceptance run (issue 14): every CUDA path of mfutop, in one prepared
# command that fits a short GPU lease and cannot be wasted on a typo.
#
#   benchmarks/gpu_acceptance.sh [--out DIR] [--dry-run] [--budget SECONDS]
#                                [--only STEP,...] [--archive FILE.tar.gz]
#   benchmarks/gpu_acceptance.sh --prepare    # here, before the device call
#
# On a CUDA machine (<= 8 min): wheels from .whl/ -> env -> mfutop --version ->
# gpus -> pytest -m gpu -> calibrate -> the own-loop Tracker -> the app under
# tmux -> profile (gpt2, auto batch, bf16-mixed, --compile) -> the same with
# --memory-limit 40GiB -> ladder (trimmed). Cheap steps first, so the compiling
# ones cannot starve them. Each step has its own time limit and all share
# --budget (default 480 s): a step that would start with too little left is
# skipped and says so. Every step writes DIR/NN-name.{out,log,step.json};
# benchmarks/gpu_acceptance_report.py turns them into DIR/report.md and
# DIR/summary.json. Exit 0 when no step failed, 1 otherwise, 2 on bad arguments.
#
# --dry-run: the same sequence on the CPU with gpt-tiny, tiny step counts, two
# ladder rungs and no torch.compile (compiling takes tens of seconds on a small
# CPU), so the script cannot rot; tests/test_gpu_acceptance.py runs it. Its
# figures are CPU figures, never GPU ones.
# --only: steps by name (install env version gpus pytest-gpu calibrate tracker
# tui profile profile-memory-limit ladder), e.g. to re-run what broke.
# --archive: also pack DIR into one .tar.gz (the device tool returns <= 8 files).
# --prepare: fill .whl/ (ignored by git) with what the device lacks: the wheels
# (../shared/tools/device-wheels.sh) and this machine's tmux with its libraries
# in .whl/tmux/; then carry [".whl"] in the device run.
set -uo pipefail

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

out="" dry=0 budget=480 only="" archive="" prepare=0
while (($#)); do
  case "$1" in
    --out) out=${2-}; shift 2 || { echo "gpu_acceptance.sh: --out needs a folder" >&2; exit 2; } ;;
    --out=*) out=${1#*=}; shift ;;
    --dry-run) dry=1; shift ;;
    --prepare) prepare=1; shift ;;
    --budget) budget=${2-}; shift 2 || { echo "gpu_acceptance.sh: --budget needs seconds" >&2; exit 2; } ;;
    --budget=*) budget=${1#*=}; shift ;;
    --only) only=${2-}; shift 2 || { echo "gpu_acceptance.sh: --only needs step names" >&2; exit 2; } ;;
    --only=*) only=${1#*=}; shift ;;
    --archive) archive=${2-}; shift 2 || { echo "gpu_acceptance.sh: --archive needs a file" >&2; exit 2; } ;;
    --archive=*) archive=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_acceptance.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $budget =~ ^[1-9][0-9]*$ ]] || { echo "gpu_acceptance.sh: --budget must be a whole number of seconds, got '$budget'" >&2; exit 2; }
steps_known=" install env version gpus pytest-gpu calibrate tracker tui profile profile-memory-limit ladder "
for s in ${only//,/ }; do
  [[ $steps_known == *" $s "* ]] || { echo "gpu_acceptance.sh: unknown step '$s' in --only (one of:$steps_known)" >&2; exit 2; }
done
if ((prepare)); then  # here, with a network: what the device run carries in .whl/
  wheels="$root/../shared/tools/device-wheels.sh"
  if [[ -x $wheels || -f $wheels ]]; then bash "$wheels" || exit 1
  else echo "gpu_acceptance.sh: $wheels not found: fetch the wheels by hand (see the device README)" >&2; fi
  if tmux_bin=$(command -v tmux); then
    mkdir -p .whl/tmux/bin .whl/tmux/lib && cp "$tmux_bin" .whl/tmux/bin/ || exit 1
    ldd "$tmux_bin" | awk '/=> \// && $1 !~ /^(libc|libm|libresolv|libpthread|libdl|librt|libtinfo)\.so/ { print $3 }' |
      xargs -r cp -L -t .whl/tmux/lib/ || exit 1
    echo "tmux: $(ls .whl/tmux/bin .whl/tmux/lib | tr '\n' ' ')" >&2
  else
    echo "gpu_acceptance.sh: no tmux here to carry; the device run will skip the app step" >&2
  fi
  du -sh .whl >&2
  exit 0
fi
[[ -n $out ]] || out="gpu-acceptance-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out" || exit 2
dir=$(cd "$out" && pwd)
rm -f "$dir"/[0-9][0-9]-*.* "$dir/report.md" "$dir/summary.json"

PY=${PYTHON:-python3}
MFUTOP=("$PY" -m tui)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NO_COLOR=1
RESERVE=15   # seconds kept for the report and the archive
MIN_STEP=10  # a step is not started with less than this left
started=$(date +%s)
deadline=$((started + budget - RESERVE))

if ((dry)); then
  dev=cpu model=gpt-tiny mem_limit=32MiB
  prof_steps=(--steps 3 --warmup 1) compile=() tracker_steps=6
  ladder_trim=(--steps 2 --warmup 1 --rungs baseline,max-batch --rung-timeout 20)
  tui_run=(--batch-size 4 --steps 3)
  lim_profile=90 lim_ladder=90 lim_tui=60
else
  dev=cuda model=gpt2 mem_limit=40GiB
  prof_steps=(--steps 10 --warmup 5) compile=(--compile) tracker_steps=30
  ladder_trim=(--steps 5 --warmup 3 --rung-timeout 40)
  tui_run=(--batch-size 8 --steps 10)
  lim_profile=150 lim_ladder=150 lim_tui=90
fi
printf '{"mode": "%s", "device": "%s", "model": "%s", "budget_s": %d, "started_unix": %d, "host": "%s"}\n' \
  "$([[ $dry == 1 ]] && echo dry-run || echo gpu)" "$dev" "$model" "$budget" "$started" "$(uname -n 2>/dev/null)" >"$dir/run.json"

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }
wanted() { [[ -z $only || ",$only," == *",$1,"* ]]; }

# skip_step NN NAME TITLE REASON
skip_step() {
  "$PY" benchmarks/gpu_acceptance_step.py "$dir" "$1-$2" "$3" skip "$4" --
}

# budget NN NAME: sets $limit (the step's own limit, cut to the budget left) and $limited_by; 1 when none left
take_budget() {
  local left=$((deadline - $(date +%s)))
  limited_by=step
  if ((left < MIN_STEP)); then return 1; fi
  if ((limit > left)); then limit=$left limited_by=budget; fi
}

# run_step NN NAME TITLE KIND LIMIT CMD...: stdout -> DIR/NN-NAME.out, stderr -> .log, verdict -> .step.json
run_step() {
  local nn=$1 name=$2 title=$3 kind=$4; limit=$5; shift 5
  wanted "$name" || return 0
  if ! take_budget; then skip_step "$nn" "$name" "$title" "time budget spent (${budget} s in all)"; return 0; fi
  local id="$nn-$name" t0 rc
  echo "[  start] $id (limit ${limit} s): $*" >&2
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" >"$dir/$id.out" 2>"$dir/$id.log" </dev/null
  rc=$?
  "$PY" benchmarks/gpu_acceptance_step.py "$dir" "$id" "$title" "$kind" "$rc" \
    "$(elapsed "$t0")" "$limit" "$limited_by" -- "$@"
}

# ------------------------------------------------------------------ 01 install
if wanted install; then
  if ((dry)); then
    skip_step 01 install "wheels from .whl/" "dry run: uses this environment's packages"
  elif compgen -G ".whl/*.whl" >/dev/null; then
    run_step 01 install "wheels from .whl/" text 120 \
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mfutop-site .whl/*.whl
    export PYTHONPATH="/tmp/mfutop-site:$PYTHONPATH"
  else
    skip_step 01 install "wheels from .whl/" "no .whl/*.whl here: run gpu_acceptance.sh --prepare before the device call and carry .whl"
  fi
fi

# ------------------------------------------------------------------ 02 env, 03 version, 04 gpus
env_py='import importlib.metadata as md, json, platform, torch
def v(n):
    try: return md.version(n)
    except md.PackageNotFoundError: return None
cuda = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
    "cuda_available": cuda, "device_name": torch.cuda.get_device_name(0) if cuda else None,
    "device_count": torch.cuda.device_count() if cuda else 0,
    "packages": {n: v(n) for n in ("textual", "typer", "nvidia-ml-py", "thop", "transformers", "pytest")}}))'
run_step 02 env "python, torch, CUDA" json 60 "$PY" -c "$env_py"
run_step 03 version "mfutop --version" version 30 "${MFUTOP[@]}" --version
run_step 04 gpus "mfutop gpus --json" json 90 "${MFUTOP[@]}" gpus --json

# ------------------------------------------------------------------ 05 pytest -m gpu
mapfile -t gpu_tests < <(grep -l -E 'mark\.gpu|pytestmark *= *pytest\.mark\.gpu' tests/test_*.py 2>/dev/null)
if wanted pytest-gpu; then
  if ((${#gpu_tests[@]})); then
    run_step 05 pytest-gpu "pytest -m gpu" junit 150 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rA --continue-on-collection-errors \
      --junitxml="$dir/05-pytest-gpu.xml" "${gpu_tests[@]}"
  else
    skip_step 05 pytest-gpu "pytest -m gpu" "no test file carries the gpu marker"
  fi
fi

# ------------------------------------------------------------------ 06 calibrate (when the command exists)
if wanted calibrate; then
  if help=$(timeout 30 "${MFUTOP[@]}" calibrate --help 2>&1); then
    cal=(calibrate --json)
    [[ $help == *--device* ]] && cal+=(--device "$dev")
    run_step 06 calibrate "mfutop calibrate --json" json 90 "${MFUTOP[@]}" "${cal[@]}"
  else
    skip_step 06 calibrate "mfutop calibrate --json" "mfutop has no calibrate command yet ('mfutop calibrate --help' failed)"
  fi
fi

# ------------------------------------------------------------------ 07 own-loop Tracker (when it exists)
run_step 07 tracker "own-loop Tracker around a tiny Hugging Face model" json 90 \
  "$PY" benchmarks/gpu_acceptance_tracker.py --device "$dev" --steps "$tracker_steps" --out "$dir/07-tracker.events.jsonl"

# ------------------------------------------------------------------ 08 the app under tmux
# Its own server socket, so the app inherits this environment, not an older tmux server's.
TMUX_BIN=$(command -v tmux) TMUX_LIBS=""
if [[ -z $TMUX_BIN && -x .whl/tmux/bin/tmux ]]; then  # carried by --prepare
  TMUX_BIN="$root/.whl/tmux/bin/tmux" TMUX_LIBS="$root/.whl/tmux/lib"
fi
tmx() { LD_LIBRARY_PATH="$TMUX_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$TMUX_BIN" "$@"; }
tui_capture() {  # tui_capture LIMIT EVENTS SCREEN -- CMD...: 0 finished, 1 run failed, 124 timed out
  local limit=$1 events=$2 screen=$3 sock="mfutop-acc-$$" conf="/tmp/mfutop-acc-$$.tmux.conf" end prev="" now i
  shift 4
  end=$(($(date +%s) + limit))
  # remain-on-exit from the server's start: an app that dies at once leaves its last words on screen
  printf 'set -g remain-on-exit on\n' >"$conf"
  tmx -L "$sock" -f "$conf" new-session -d -s acc -x 160 -y 50 "$(printf '%q ' "$@")" || return 1
  rm -f "$conf"
  until grep -q -E '"event": "run_(finished|failed)"' "$events" 2>/dev/null; do
    if (($(date +%s) >= end)) || [[ $(tmx -L "$sock" display -p -t acc '#{pane_dead}' 2>/dev/null) != 0 ]]; then
      tmx -L "$sock" capture-pane -p -S - -t acc >"$screen" 2>/dev/null
      tmx -L "$sock" kill-server 2>/dev/null
      (($(date +%s) >= end)) && return 124
      echo "the app exited before the run finished; its last line:" >&2
      grep -v -e '^Pane is dead' -e '^[[:space:]]*$' "$screen" | tail -1 >&2
      return 1
    fi
    sleep 0.5
  done
  for i in $(seq 1 10); do  # the table is finished once the screen stops changing (or after 5 s)
    sleep 0.5
    now=$(tmx -L "$sock" capture-pane -p -t acc 2>/dev/null)
    [[ -n $now && $now == "$prev" ]] && break
    prev=$now
  done
  printf '%s\n' "$now" >"$screen"
  tmx -L "$sock" send-keys -t acc q 2>/dev/null
  for i in $(seq 1 10); do tmx -L "$sock" has-session -t acc 2>/dev/null || break; sleep 0.5; done
  tmx -L "$sock" kill-server 2>/dev/null
  if grep -q '"event": "run_failed"' "$events"; then
    grep '"event": "run_failed"' "$events" | tail -1 >&2; return 1
  fi
  return 0
}
if wanted tui; then
  title="the app under tmux, captured when the table is finished"
  if [[ -z $TMUX_BIN ]]; then
    skip_step 08 tui "$title" "tmux is not installed here, nor carried in .whl/tmux (gpu_acceptance.sh --prepare)"
  else
    limit=$lim_tui
    if take_budget; then
      echo "[  start] 08-tui (limit ${limit} s)" >&2
      t0=$(date +%s.%N)
      tui_capture "$limit" "$dir/08-tui.events.jsonl" "$dir/08-tui.out" -- \
        env TERM=xterm-256color "${MFUTOP[@]}" tui --model "$model" --device "$dev" "${tui_run[@]}" \
        --precision bf16-mixed --out "$dir/08-tui.events.jsonl" 2>"$dir/08-tui.log"
      rc=$?
      "$PY" benchmarks/gpu_acceptance_step.py "$dir" 08-tui "$title" screen "$rc" \
        "$(elapsed "$t0")" "$limit" "$limited_by" -- \
        "${MFUTOP[@]}" tui --model "$model" --device "$dev" "${tui_run[@]}" --precision bf16-mixed
    else
      skip_step 08 tui "$title" "time budget spent (${budget} s in all)"
    fi
  fi
fi

# ------------------------------------------------------------------ 09, 10 profile
profile=(profile --model "$model" --device "$dev" --batch-size auto --precision bf16-mixed "${compile[@]}" "${prof_steps[@]}")
run_step 09 profile "profile, auto batch, bf16-mixed${compile:+, compile}" json "$lim_profile" \
  "${MFUTOP[@]}" "${profile[@]}" --json --out "$dir/09-profile.events.jsonl"
run_step 10 profile-memory-limit "profile --memory-limit $mem_limit" json "$lim_profile" \
  "${MFUTOP[@]}" "${profile[@]}" --memory-limit "$mem_limit" --json --out "$dir/10-profile-memory-limit.events.jsonl"

# ------------------------------------------------------------------ 11 ladder (streamed: a timeout keeps the rungs done)
run_step 11 ladder "ladder, trimmed" jsonl "$lim_ladder" \
  "${MFUTOP[@]}" ladder --model "$model" --device "$dev" "${ladder_trim[@]}" --jsonl

# ------------------------------------------------------------------ report
"$PY" benchmarks/gpu_acceptance_report.py "$dir" || echo "gpu_acceptance.sh: the report failed" >&2
if [[ -n $archive ]]; then
  tar czf "$archive" -C "$(dirname "$dir")" "$(basename "$dir")" && echo "archive: $archive" >&2
fi
echo "report: $dir/report.md ($(($(date +%s) - started)) s)" >&2
"$PY" - "$dir" <<'EOF'
import json, pathlib, sys
bad = [p.name for p in pathlib.Path(sys.argv[1]).glob("*.step.json") if json.loads(p.read_text())["status"] == "failed"]
sys.exit(1 if bad else 0)
EOF
