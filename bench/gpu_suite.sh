#!/usr/bin/env bash
# The GPU suite: every GPU figure and check of the project in one call of the device tool, in under 8 minutes.
#
#     bash bench/gpu_suite.sh OUT_DIR              # on the GPU machine (the device tool: see below)
#     bash bench/gpu_suite.sh --dry-run OUT_DIR    # the same steps on the CPU with tiny sizes (or DEVICE=cpu)
#     bash bench/gpu_suite.sh --plan [--dry-run]   # print each step (name, timeout, command) and run nothing
#
# With the device tool (an H200; Python 3.12, torch with CUDA, no network, no nbdev):
#     bash bench/gpu_wheels.sh          # here, once: the wheels the image lacks, into .gpu_wheels/ (ignored by git)
#     run(command='bash bench/gpu_suite.sh $OUT', carry=['.gpu_wheels'], timeout_s=540)
#
# Steps, each under its own `timeout` (seconds, on the GPU; --dry-run gives each DRY_SCALE times as long):
#   env           10  nvidia-smi, python/torch/CUDA/GPU versions              -> env.json, nvidia-smi.txt
#   install       25  the carried wheels offline (pip --no-index), then `pip install -e . --no-deps`
#   nbdev_cuda    60  nbdev_test --flags cuda over nbs/ (8 workers)           -> logs/nbdev_cuda.log
#                     (--dry-run: lists the cuda cells and runs nbdev_test on nbs/09_text.ipynb without flags)
#   mesm_speed    35  bench/mesm_speed.py, eager, bf16 autocast               -> mesm_speed_cuda.json
#   mesm_fp32     35  bench/mesm_speed.py, eager, fp32 (--precision fp32, or --no-amp before that flag)
#                                                                             -> mesm_speed_cuda_fp32.json
#   mesm_compile  75  bench/mesm_speed.py --compile, bf16                     -> mesm_speed_cuda_compile.json
#   prem_search   85  bench/prem_search.py, all 10,895 queries                -> prem_search_cuda.json
#   corpus_scale  50  bench/corpus_scale.py, 10k-300k videos                  -> corpus_scale_cuda.json
#   corpus_1m     15  bench/corpus_scale.py, 1M videos (78 GB: skipped, and said so, where no scratch disk holds it;
#                     its row is merged into corpus_scale_cuda.json)
#   demo          50  mesm-prem demo --device cuda                            -> demo_report/ (metrics, figures)
#   merge          5  corpus_1m's rows into corpus_scale_cuda.json
# 445 s in all, plus 3 s of grace per killed step. The bench scripts' `--precision bf16` is passed where their argparse
# has the flag (else bf16 autocast is their CUDA default). A step that fails or times out is recorded and the next
# one runs; no step starts past DEADLINE (465 s) after the start, and a late one gets only what is left.
#
# OUT_DIR receives at most 8 files (what the device tool brings back): summary.json (each step's exit code, seconds,
# timeout, status, command), suite.log (every step's output), gpu_suite.tar.gz (everything: env, logs, every JSON,
# the demo report), and the bench JSONs loose. Both are rewritten after every step, so a run cut short still
# returns what it measured. To file the figures: copy the *_cuda*.json into bench/results/ and run bench/report.py.
#
# --dry-run (CPU): mesm_speed --lengths 8 --steps 1 (the --compile step under TORCH_COMPILE_DISABLE=1: inductor on
# two CPU cores takes many minutes), prem_search --queries 10, corpus_scale --sizes 100 300 and 1000,
# demo --quick. Prove the wheel set in a fresh virtual environment holding only what the image holds:
#     python -m venv /tmp/gpuenv && /tmp/gpuenv/bin/pip install torch numpy h5py einops scipy matplotlib tqdm \
#         safetensors pytest hypothesis setuptools wheel packaging pyyaml regex click joblib psutil pygments \
#         typing-extensions six build pyproject-hooks
#     PATH=/tmp/gpuenv/bin:$PATH bash bench/gpu_suite.sh --dry-run /tmp/gpu_suite_out   # from a copy of the tree
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/gpu_suite.sh"
cd "$ROOT"
PY=${PYTHON:-python3}

# ---------------------------------------------------------------- internal steps (run by `step`, under `timeout`)
case "${1:-}" in
--_env)
  W=$GPU_SUITE_W
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi 2>&1 | tee "$W/nvidia-smi.txt"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1 \
      | tee -a "$W/nvidia-smi.txt"
  else echo "nvidia-smi: not found" | tee "$W/nvidia-smi.txt"; fi
  exec "$PY" - "$W/env.json" <<'EOF'
import json, os, platform, shutil, sys
info = dict(python=platform.python_version(), executable=sys.executable, platform=platform.platform(),
            cpus=os.cpu_count(), dry_run=os.environ.get('GPU_SUITE_DRY') == '1')
try: info['ram_gib'] = round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1)
except (ValueError, OSError): pass
info['disk_free_gb'] = {d: round(shutil.disk_usage(d).free / 1e9, 1) for d in ('/dev/shm', '/tmp', os.getcwd()) if os.path.isdir(d)}
import torch
info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
            cuda_available=torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                multiprocessors=p.multi_processor_count, gpus=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
for m in ('triton', 'numpy', 'h5py', 'scipy', 'einops', 'matplotlib'):
    try: info[m] = __import__(m).__version__
    except Exception as e: info[m] = f"not importable: {type(e).__name__}"
print(json.dumps(info, indent=1)); open(sys.argv[1], 'w').write(json.dumps(info, indent=1) + '\n')
sys.exit(0 if info['cuda_available'] or info['dry_run'] else 1)   # on the GPU machine, no CUDA is a failure
EOF
  ;;
--_install)
  W=$GPU_SUITE_W; WH=${GPU_SUITE_WHEELS:-.gpu_wheels}
  if [[ ! -f $WH/requirements.txt ]]; then
    echo "no $WH/requirements.txt: run 'bash bench/gpu_wheels.sh' before the call and carry .gpu_wheels"; exit 2; fi
  # only the carried wheels: no index, no pip configuration, no find-links or constraints from the environment
  unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT PIP_REQUIREMENT
  export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
  PIP=("$PY" -m pip install --no-index --no-cache-dir --no-compile)
  echo "wheels: $(ls "$WH"/*.whl | wc -l) in $WH; needs: $(tr '\n' ' ' < "$WH/requirements.txt")"
  if ! "${PIP[@]}" -q --find-links "$WH" -r "$WH/requirements.txt"; then
    echo "resolved install failed (an image package older than a carried wheel asks?): installing every wheel --no-deps"
    "${PIP[@]}" -q --no-deps "$WH"/*.whl || exit 3
  fi
  "${PIP[@]}" -q --no-deps --no-build-isolation -e . || exit 4
  "$PY" -m pip check 2>&1 | head -20 || true
  "$PY" - "$W/packages.json" <<'EOF' || exit 5
import importlib.metadata as md, json, sys
names = 'nbdev fastcore execnb ghapi fastgit ftfy nltk regex ipython watchdog mesm_prem torch numpy psutil setuptools'.split()
v = {}
for n in names:
    try: v[n] = md.version(n)
    except md.PackageNotFoundError: v[n] = None
import nbdev.test, execnb.nbio, fastcore.basics, ghapi.all, ftfy, nltk, regex, IPython, mesm_prem.cli, mesm_prem.text   # noqa
print(json.dumps(v)); open(sys.argv[1], 'w').write(json.dumps(v, indent=1) + '\n')
EOF
  command -v nbdev_test mesm-prem || { echo "nbdev_test or mesm-prem is not on PATH ($PATH)"; exit 6; }
  exit 0
  ;;
--_nbdev_dry)   # the dry run's stand-in for `nbdev_test --flags cuda`: the cuda cells, then one notebook through nbdev
  "$PY" - <<'EOF' || exit 1
import json, re
from pathlib import Path
n = 0
for nb in sorted(Path('nbs').glob('[!_.]*.ipynb')):
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        src = ''.join(c['source'])
        if c['cell_type'] == 'code' and re.search(r'^#\|\s*cuda\b', src, re.M):
            n += 1; body = [l for l in src.splitlines() if l.strip() and not l.startswith('#|')]
            print(f"{nb.name} cell {i}: {body[0][:100] if body else ''}")
print(f"{n} cuda cells (the GPU run executes them with nbdev_test --flags cuda)")
assert n, "no cuda cells found"
EOF
  nbdev_test --help | grep -q -- '--flags' || { echo "nbdev_test has no --flags"; exit 1; }
  exec nbdev_test --path nbs/09_text.ipynb --n_workers 1 --timing
  ;;
--_merge)   # corpus_1m's rows into corpus_scale_<dev>.json
  exec "$PY" - "$GPU_SUITE_W" "$GPU_SUITE_DEV" <<'EOF'
import json, sys
from pathlib import Path
w, dev = Path(sys.argv[1]), sys.argv[2]
main, big = w/f"corpus_scale_{dev}.json", w/f"corpus_scale_{dev}_1m.json"
if not (main.exists() and big.exists()): print(f"nothing to merge ({main.name}: {main.exists()}, {big.name}: {big.exists()})"); sys.exit(0)
m, b = json.loads(main.read_text()), json.loads(big.read_text())
have = {r['videos'] for r in m['results']}
m['results'] += [r for r in b['results'] if r['videos'] not in have]
main.write_text(json.dumps(m, indent=1) + '\n'); print(f"merged {len(b['results'])} row(s) of {big.name} into {main.name}")
EOF
  ;;
esac

# ---------------------------------------------------------------- options
DRY=0; PLAN=0; OUT_DIR=
[[ ${DEVICE:-cuda} == cpu ]] && DRY=1
for a in "$@"; do
  case $a in
    --dry-run) DRY=1 ;;
    --plan) PLAN=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) OUT_DIR=$a ;;
  esac
done
if [[ -z $OUT_DIR && $PLAN == 0 ]]; then echo "usage: bash bench/gpu_suite.sh [--dry-run] [--plan] OUT_DIR" >&2; exit 2; fi
DEV=cuda; [[ $DRY == 1 ]] && DEV=cpu
DRY_SCALE=${DRY_SCALE:-6}
DEADLINE=${DEADLINE:-465}; [[ $DRY == 1 ]] && DEADLINE=$(( DEADLINE * DRY_SCALE ))
export PYTHONUNBUFFERED=1 GPU_SUITE_DRY=$DRY GPU_SUITE_DEV=$DEV PYTHON=$PY
# console scripts of what `install` puts into this Python's environment
PYBIN=$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))' 2>/dev/null) && export PATH="$PYBIN:$PATH"

now() { date +%s.%N; }
T0=$(now)
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }

if [[ $PLAN == 0 ]]; then
  mkdir -p "$OUT_DIR"; OUT_DIR=$(cd "$OUT_DIR" && pwd)
  W=$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX"); mkdir -p "$W/logs"    # everything, packed into OUT_DIR
  SCR=$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_scratch.XXXXXX")              # demo run folder; not packed
  export GPU_SUITE_W=$W
  LOG="$OUT_DIR/suite.log"; : > "$LOG"; : > "$W/steps.tsv"
else
  W=/W; SCR=/SCRATCH; LOG=/dev/null
fi

# The corpus indexes' scratch folder: the one of /dev/shm and $TMPDIR with the most free space (on the GPU machine
# /dev/shm is memory: no disk writes; corpus_scale.py skips, and says so, the sizes that do not fit).
corpus_dir() {
  local best= bestfree=0 d f
  for d in /dev/shm "${TMPDIR:-/tmp}"; do
    [[ -d $d && -w $d ]] || continue
    f=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 { print $4 }'); f=${f:-0}
    if (( f > bestfree )); then best=$d; bestfree=$f; fi
  done
  echo "${best:-${TMPDIR:-/tmp}}/gpu_suite_corpus.$$"
}
CORPUS=$(corpus_dir)

# `--precision` of a bench script, where its argparse has the flag (read from the source: no torch import)
has_flag() { grep -qE -- "add_argument\([^)]*['\"]$2['\"]" "$1"; }
MESM_PREC=(); PREM_PREC=()
MESM_FP32=(--no-amp)
has_flag bench/mesm_speed.py --precision && MESM_PREC=(--precision bf16) && MESM_FP32=(--precision fp32)
has_flag bench/prem_search.py --precision && PREM_PREC=(--precision bf16)

write_summary() {   # write_summary true|false (complete)
  [[ $PLAN == 1 ]] && return 0
  "$PY" - "$W/steps.tsv" "$OUT_DIR/summary.json" "$1" "$DRY" "$DEV" "$(elapsed)" "$CORPUS" "${MESM_PREC[*]:-}" <<'EOF' \
    || printf '{"complete": %s, "error": "summary.json could not be written by python"}\n' "$3" > "$OUT_DIR/summary.json"
import json, sys, datetime, socket
tsv, out, complete, dry, dev, secs, corpus, prec = sys.argv[1:9]
steps = []
for line in open(tsv):
    name, rc, s, t, status, cmd = line.rstrip('\n').split('\t')
    steps.append(dict(name=name, rc=None if rc == '' else int(rc), seconds=float(s), timeout_s=int(t), status=status,
                      log=f"logs/{name}.log", command=cmd))
json.dump(dict(suite='bench/gpu_suite.sh', complete=complete == 'true', dry_run=dry == '1', device=dev,
               host=socket.gethostname(), written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               seconds_total=int(secs), step_budget_s=sum(x['timeout_s'] for x in steps), corpus_scratch=corpus,
               mesm_precision_flag=prec or None, ok=all(x['status'] == 'ok' for x in steps), steps=steps),
          open(out, 'w'), indent=1)
open(out, 'a').write('\n')
EOF
}

pack() {   # everything into OUT_DIR/gpu_suite.tar.gz; the bench JSONs loose beside it (at most 8 files in all)
  [[ $PLAN == 1 ]] && return 0
  cp "$LOG" "$W/suite.log" 2>/dev/null; cp "$OUT_DIR/summary.json" "$W/" 2>/dev/null
  tar -czf "$OUT_DIR/gpu_suite.tar.gz.tmp" -C "$W" . 2>/dev/null && mv "$OUT_DIR/gpu_suite.tar.gz.tmp" "$OUT_DIR/gpu_suite.tar.gz"
  local f
  for f in mesm_speed_$DEV.json mesm_speed_${DEV}_fp32.json mesm_speed_${DEV}_compile.json prem_search_$DEV.json \
           corpus_scale_$DEV.json; do
    [[ -f $W/$f ]] && cp "$W/$f" "$OUT_DIR/"
  done
}

# step NAME TIMEOUT COMMAND... : run COMMAND under `timeout`, log it, record its exit code and seconds
step() {
  local name=$1 t=$2; shift 2
  [[ $DRY == 1 ]] && t=$(( t * DRY_SCALE ))
  if [[ $PLAN == 1 ]]; then printf 'STEP\t%s\t%s\t%s\n' "$name" "$t" "$*"; return 0; fi
  local left=$(( DEADLINE - $(elapsed) )) rc status s t1
  if (( left < 5 )); then
    echo "=== [$name] skipped: the suite's ${DEADLINE}s are spent" | tee -a "$LOG"
    printf '%s\t\t0\t%s\tskipped\t%s\n' "$name" "$t" "$*" >> "$W/steps.tsv"; write_summary false; return 0
  fi
  (( left < t )) && t=$left
  echo "=== [$name] $(date -u +%H:%M:%S) timeout ${t}s: $*" | tee -a "$LOG"
  t1=$(now)
  # in the background, so that a signal to the suite is handled at once (bash runs traps during `wait`)
  timeout -k 3 "$t" "$@" < /dev/null > >(tee "$W/logs/$name.log" | tee -a "$LOG") 2>&1 &
  CUR=$!; CUR_STEP=("$name" "$t" "$t1" "$*"); wait "$CUR"; rc=$?; CUR=
  sleep 0.2   # let tee write the step's last lines
  s=$(awk -v a="$t1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  echo "=== [$name] $status: exit $rc after ${s}s" | tee -a "$LOG"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$s" "$t" "$status" "$*" >> "$W/steps.tsv"
  write_summary false; pack
}

finish() {
  trap - EXIT INT TERM
  [[ $PLAN == 1 ]] && return 0
  write_summary $COMPLETE; pack
  echo "=== done in $(elapsed)s: $OUT_DIR" | tee -a "$LOG"; ls -l "$OUT_DIR"
  awk -F'\t' '{ printf "%-13s %-8s rc=%-4s %7ss / %ss\n", $1, $5, $2, $3, $4 }' "$W/steps.tsv"
  rm -rf "$SCR" "$CORPUS" "$W"   # all of W is in gpu_suite.tar.gz
}
trap finish EXIT
CUR=; CUR_STEP=(); COMPLETE=true
interrupted() {   # a signal to the suite: stop the running step, record it, and finish (the EXIT trap)
  COMPLETE=false
  if [[ -n $CUR ]]; then
    echo "=== [${CUR_STEP[0]}] interrupted" | tee -a "$LOG"; kill -TERM "$CUR" 2>/dev/null
    printf '%s\t\t%s\t%s\tinterrupted\t%s\n' "${CUR_STEP[0]}" \
      "$(awk -v a="${CUR_STEP[2]}" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')" "${CUR_STEP[1]}" "${CUR_STEP[3]}" >> "$W/steps.tsv"
  else echo "=== interrupted" | tee -a "$LOG"; fi
  exit 130
}
trap interrupted INT TERM

if [[ $PLAN == 0 ]]; then
  echo "=== gpu_suite: device $DEV, dry run $DRY, out $OUT_DIR, work $W, corpus scratch $CORPUS, mesm precision flag: ${MESM_PREC[*]:-none}" | tee -a "$LOG"
fi

# ---------------------------------------------------------------- the steps
step env 10 bash "$SELF" --_env
step install 25 bash "$SELF" --_install
# should the editable install have failed: the project from the checkout, its CLI through python -m
MESM_PREM=(mesm-prem)
if [[ $PLAN == 0 ]] && ! (cd / && "$PY" -c 'import mesm_prem') >/dev/null 2>&1; then
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"; echo "=== mesm_prem is not installed: PYTHONPATH=$PYTHONPATH" | tee -a "$LOG"
fi
[[ $PLAN == 0 ]] && ! command -v mesm-prem >/dev/null && MESM_PREM=("$PY" -m mesm_prem.cli)
if [[ $DRY == 0 ]]; then
  step nbdev_cuda 60 env OMP_NUM_THREADS=2 nbdev_test --flags cuda --n_workers 8 --timing
  step mesm_speed 35 "$PY" bench/mesm_speed.py --device cuda ${MESM_PREC[@]+"${MESM_PREC[@]}"} --out "$W/mesm_speed_cuda.json"
  step mesm_fp32 35 "$PY" bench/mesm_speed.py --device cuda "${MESM_FP32[@]}" --out "$W/mesm_speed_cuda_fp32.json"
  step mesm_compile 75 "$PY" bench/mesm_speed.py --device cuda --compile ${MESM_PREC[@]+"${MESM_PREC[@]}"} --out "$W/mesm_speed_cuda_compile.json"
  step prem_search 85 "$PY" bench/prem_search.py --device cuda ${PREM_PREC[@]+"${PREM_PREC[@]}"} --out "$W/prem_search_cuda.json"
  step corpus_scale 50 "$PY" bench/corpus_scale.py --device cuda --sizes 10000 30000 100000 300000 --dir "$CORPUS" --out "$W/corpus_scale_cuda.json"
  step corpus_1m 15 "$PY" bench/corpus_scale.py --device cuda --sizes 1000000 --dir "$CORPUS" --out "$W/corpus_scale_cuda_1m.json"
  step demo 50 "${MESM_PREM[@]}" demo --device cuda --quiet --out "$SCR/demo"
else
  step nbdev_cuda 60 bash "$SELF" --_nbdev_dry
  step mesm_speed 35 "$PY" bench/mesm_speed.py --device cpu --lengths 8 --steps 1 ${MESM_PREC[@]+"${MESM_PREC[@]}"} --out "$W/mesm_speed_cpu.json"
  step mesm_fp32 35 "$PY" bench/mesm_speed.py --device cpu --lengths 8 --steps 1 "${MESM_FP32[@]}" --out "$W/mesm_speed_cpu_fp32.json"
  step mesm_compile 75 env TORCH_COMPILE_DISABLE=1 "$PY" bench/mesm_speed.py --device cpu --lengths 8 --steps 1 --compile ${MESM_PREC[@]+"${MESM_PREC[@]}"} --out "$W/mesm_speed_cpu_compile.json"
  step prem_search 85 "$PY" bench/prem_search.py --device cpu --queries 10 ${PREM_PREC[@]+"${PREM_PREC[@]}"} --out "$W/prem_search_cpu.json"
  step corpus_scale 50 "$PY" bench/corpus_scale.py --device cpu --sizes 100 300 --dir "$CORPUS" --out "$W/corpus_scale_cpu.json"
  step corpus_1m 15 "$PY" bench/corpus_scale.py --device cpu --sizes 1000 --dir "$CORPUS" --out "$W/corpus_scale_cpu_1m.json"
  step demo 50 "${MESM_PREM[@]}" demo --device cpu --quick --quiet --out "$SCR/demo"
fi
if [[ $PLAN == 0 && -d $SCR/demo/report ]]; then cp -r "$SCR/demo/report" "$W/demo_report"; pack; fi
step merge 5 bash "$SELF" --_merge
exit 0
