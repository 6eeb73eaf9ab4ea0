#!/usr/bin/env bash
# Retake docs/tensorboard.png: a short real run of the default recipe on the embedded model, then TensorBoard's
# scalars dashboard (filtered to the training loss and GQA validation accuracy) captured by headless Chromium.
#
#     bash scripts/tensorboard_screenshot.sh [out.png]      # needs `chromium` (Debian: apt-get install chromium)
#
# A 48-step run on 64 validation questions: it illustrates the dashboard, it is not a result.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/tensorboard.png}
run=runs/docs
port=${TB_PORT:-6123}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium on PATH (Debian: apt-get install chromium)" >&2; exit 2; }

rm -rf "$run"
python train.py --data.init_args.batch_size 16 --trainer.max_epochs 4 --trainer.limit_train_batches 12 \
    --trainer.limit_val_batches 4 --trainer.limit_test_batches 8 --trainer.default_root_dir "$run"

tensorboard --logdir "$run" --port "$port" --host 127.0.0.1 >/dev/null 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null && break
    sleep 1
done
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 \
    --virtual-time-budget=20000 --screenshot="$out" \
    "http://127.0.0.1:$port/?darkMode=false#scalars&regexInput=train%2Floss%7Cval%2Fgqa&_smoothingWeight=0"
echo "wrote $out"
