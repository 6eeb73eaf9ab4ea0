#!/usr/bin/env bash
# Retake docs/tensorboard.png: a short real run of the default recipe on the embedded model, then TensorBoard's
# scalars dashboard (filtered to the training loss and POPE validation accuracy) captured by headless Chromium.
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

if [ "${TB_REUSE_RUN:-0}" != 1 ]; then  # TB_REUSE_RUN=1: screenshot the existing run again
rm -rf "$run"
python train.py --data.init_args.batch_size 16 --trainer.max_epochs 4 --trainer.limit_train_batches 12 \
    --trainer.limit_val_batches 4 --trainer.limit_test_batches 8 --trainer.default_root_dir "$run"
fi

tensorboard --logdir "$run" --port "$port" --host 127.0.0.1 >/dev/null 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for _ in $(seq 60); do
    curl -sf "http://127.0.0.1:$port/data/runs" >/dev/null && break
    sleep 1
done
# software WebGL draws the charts; tagFilter is the dashboard's tag regex (train/loss|val/pope), no smoothing and no
# outlier clipping so every logged point shows
"$browser" --headless=new --no-sandbox --enable-unsafe-swiftshader --use-angle=swiftshader --hide-scrollbars \
    --window-size=1400,900 --virtual-time-budget=25000 --screenshot="$out" \
    "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=train%2Floss%7Cval%2Fpope&_smoothingWeight=0&_ignoreYOutliers=false"
echo "wrote $out"
