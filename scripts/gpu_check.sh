#!/usr/bin/env bash
# The GPU check of issues 20 and 28, one command for a session that is lent an NVIDIA H100/H200:
#
#     bash scripts/gpu_check.sh [OUT_DIR]            (OUT_DIR defaults to $OUT, else runs/gpu_check)
#     PRESET=tiny bash scripts/gpu_check.sh          (the same steps on CPU, minutes: what the test suite runs)
#
# 0. The box has a bare python3 (no `python`) without some of vseam-pl's packages and no network: the pure-Python
#    wheels carried in bench/wheels (jsonargparse; refresh with `python3 -m pip download --no-deps
#    --only-binary=:all: -d bench/wheels NAME==VERSION`) are installed into a temporary folder on PYTHONPATH when
#    one of them is not importable. Rehearse on CPU with `python3 scripts/box_env.py VENV` (a venv holding only the
#    box's packages, bench/box-packages.txt) and `PYTHON=VENV/bin/python3 PRESET=tiny bash scripts/gpu_check.sh`.
# 1. python -m bench.scale --preset llava-1.5-7b (random weights, bf16, 576 image tokens) at discovery batch sizes 16/64/256
#    and evaluation batch sizes 1/8/32: discovery, training step, folded inference, evaluation throughput, memory;
# 2. python -m bench.strategies: 3 training steps of the same 7B-shaped model single-device, with FSDP (FrozenFSDPStrategy)
#    and with DeepSpeed ZeRO-2 (skipped, with the reason, where deepspeed does not import): only the scales get
#    gradients, the loss matches the single-device run, the checkpoint holds only the scales.
# Each step has its own timeout (300 s + 200 s by default: the whole check ends within 9 minutes, inside one
# 10-minute device call) and writes its JSON as each part or leg finishes, so a crash or a timeout keeps what was
# measured before it. Outputs: OUT_DIR/scale-<preset>.json, scale-<preset>.md, strategies-<preset>.json,
# gpu_check.log. Exit status 0 only when both steps finished and passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
PRESET="${PRESET:-llava-1.5-7b}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [ -z "$PY" ]; then
  echo "gpu_check: neither python3 nor python is on PATH (set PYTHON=...)" | tee "$LOG" >&2
  exit 1
fi
if [ "$PRESET" = tiny ]; then
  # the strategies in bf16 as on the GPU (bf16 weights beside fp32 scales is what broke FSDP before)
  SCALE_ARGS=(--batch-sizes 16 --eval-batch-sizes 2); STRAT_ARGS=(--precision bf16-mixed --dtype bfloat16 --atol 5e-3)
  SCALE_TIMEOUT="${SCALE_TIMEOUT:-600}"; STRAT_TIMEOUT="${STRAT_TIMEOUT:-300}"
else
  SCALE_ARGS=(--batch-sizes 16 64 256 --eval-batch-sizes 1 8 32)
  STRAT_ARGS=(--precision bf16-mixed --dtype bfloat16 --atol 5e-3)
  SCALE_TIMEOUT="${SCALE_TIMEOUT:-300}"; STRAT_TIMEOUT="${STRAT_TIMEOUT:-200}"
fi
{
  echo "== $(date -u +%FT%TZ) gpu_check preset=$PRESET python=$PY"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
} 2>&1 | tee "$LOG"

# 0. carried wheels, only when one of their distributions is missing
WHEELS=(bench/wheels/*.whl)
if [ -e "${WHEELS[0]}" ] && ! "$PY" - "${WHEELS[@]}" <<'PYEOF' 2>>"$LOG"
import importlib.metadata, os, sys
names = [os.path.basename(whl).split("-")[0] for whl in sys.argv[1:]]
missing = []
for name in names:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit("== not installed here: " + " ".join(missing))
PYEOF
then
  SITE="$(mktemp -d -t vseam-gpu-check-site.XXXXXX)"
  trap 'rm -rf "$SITE"' EXIT   # the folder this script made, nothing else
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${WHEELS[@]}" \
    >>"$LOG" 2>&1; then
    echo "gpu_check: installing ${WHEELS[*]} into $SITE failed (see $LOG)" | tee -a "$LOG" >&2
    exit 1
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "== installed ${WHEELS[*]} into $SITE" | tee -a "$LOG"
fi
if ! "$PY" -c "import torch, lightning, transformers, jsonargparse; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1 | tee -a "$LOG"; then
  echo "gpu_check: the packages the benches import are not all importable (see $LOG)" | tee -a "$LOG" >&2
  exit 1
fi

# 1. scale
status=0
timeout "$SCALE_TIMEOUT" "$PY" -m bench.scale --preset "$PRESET" "${SCALE_ARGS[@]}" \
  --json "$OUT_DIR/scale-$PRESET.json" > "$OUT_DIR/scale-$PRESET.md" 2>> "$LOG" || status=$?
cat "$OUT_DIR/scale-$PRESET.md"
echo "== scale exit $status" | tee -a "$LOG"

# 2. strategies
s2=0
timeout "$STRAT_TIMEOUT" "$PY" -m bench.strategies --preset "$PRESET" --steps 3 --batch 2 \
  --strategies auto fsdp deepspeed_stage_2 "${STRAT_ARGS[@]}" --json "$OUT_DIR/strategies-$PRESET.json" \
  > "$OUT_DIR/strategies-$PRESET.out" 2>> "$LOG" || s2=$?
tail -n 80 "$OUT_DIR/strategies-$PRESET.out"
[ -f "$OUT_DIR/strategies-$PRESET.json" ] || s2=1
echo "== strategies exit $s2" | tee -a "$LOG"
[ "$status" -eq 0 ] && [ "$s2" -eq 0 ]
