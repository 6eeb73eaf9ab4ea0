#!/usr/bin/env bash
# The GPU check of issue 20, one command for a session that is lent an NVIDIA H100/H200:
#
#     bash scripts/gpu_check.sh [OUT_DIR]            (OUT_DIR defaults to $OUT, else runs/gpu_check)
#     PRESET=tiny bash scripts/gpu_check.sh          (the same steps on CPU, minutes: what the test suite runs)
#
# 1. bench/scale.py --preset llava-1.5-7b (random weights, bf16, 576 image tokens) at discovery batch sizes 16/64/256
#    and evaluation batch sizes 1/8/32: discovery, training step, folded inference, evaluation throughput, memory;
# 2. bench/strategies.py: 3 training steps of the same 7B-shaped model single-device, with FSDP and with DeepSpeed
#    ZeRO-2 (skipped, with the reason, where deepspeed does not import): only the scales get gradients, the loss
#    matches the single-device run, the checkpoint holds only the scales.
# Budget on an H200: about 4 + 3 minutes (each step has its own timeout so one overrun cannot eat the other's
# time). Outputs: OUT_DIR/scale-<preset>.json, scale-<preset>.md, strategies-<preset>.json, gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
PRESET="${PRESET:-llava-1.5-7b}"
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ "$PRESET" = tiny ]; then
  SCALE_ARGS=(--batch-sizes 16 --eval-batch-sizes 2); STRAT_ARGS=(--precision 32-true --dtype float32 --atol 1e-4)
  SCALE_TIMEOUT=600; STRAT_TIMEOUT=300
else
  SCALE_ARGS=(--batch-sizes 16 64 256 --eval-batch-sizes 1 8 32)
  STRAT_ARGS=(--precision bf16-mixed --dtype bfloat16 --atol 5e-3)
  SCALE_TIMEOUT="${SCALE_TIMEOUT:-330}"; STRAT_TIMEOUT="${STRAT_TIMEOUT:-210}"
fi
{
  echo "== $(date -u +%FT%TZ) gpu_check preset=$PRESET"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | tee "$OUT_DIR/gpu_check.log"
status=0
timeout "$SCALE_TIMEOUT" python bench/scale.py --preset "$PRESET" "${SCALE_ARGS[@]}" \
  --json "$OUT_DIR/scale-$PRESET.json" > "$OUT_DIR/scale-$PRESET.md" 2>> "$OUT_DIR/gpu_check.log" || status=$?
cat "$OUT_DIR/scale-$PRESET.md"
echo "== scale exit $status" | tee -a "$OUT_DIR/gpu_check.log"
s2=0
timeout "$STRAT_TIMEOUT" python bench/strategies.py --preset "$PRESET" --steps 3 --batch 2 \
  --strategies auto fsdp deepspeed_stage_2 "${STRAT_ARGS[@]}" --json "$OUT_DIR/strategies-$PRESET.json" \
  2>> "$OUT_DIR/gpu_check.log" | tail -n 80 || s2=$?
[ -f "$OUT_DIR/strategies-$PRESET.json" ] || s2=1
echo "== strategies exit $s2" | tee -a "$OUT_DIR/gpu_check.log"
[ "$status" -eq 0 ] && [ "$s2" -eq 0 ]
