#!/usr/bin/env bash
# One GPU lease, every training job of issue #6, inside one wall-clock budget.
#
# Runs on a machine with JAX + CUDA and no TensorFlow (see experiments/jax_train.py).
# Needs .devdata/300w.npz (python -m experiments.jax_train --pack .devdata/300w.npz)
# and, if keras is missing there, its wheels in .whl/.
#
#   OUT=/somewhere TOTAL=560 bash experiments/jax_gpu_session.sh
#
# Concurrently: the paper student (mobilefan, 256 px) and the lite student
# (128 px), each as long as the budget allows; the hourglass teacher (256 px)
# for TEACHER_S seconds, then the four ablation rows of the paper student
# (alone, +FAD, +FSD, +both; ABL_EPOCHS each, same seed) against that teacher.
# Everything lands in $OUT: the students' weights and one tar of logs.
set -u
OUT=${OUT:-runs/gpu_session}
TOTAL=${TOTAL:-560}          # seconds for the whole session
TEACHER_S=${TEACHER_S:-200}  # teacher training budget
ABL_EPOCHS=${ABL_EPOCHS:-30}
SMOKE=${SMOKE:-0}            # 1: tiny CPU rehearsal of this script (lite presets, few faces)
T0=$(date +%s)
W=${WORK:-/tmp/gpu_session}
mkdir -p "$OUT" "$W"
export XLA_PYTHON_CLIENT_PREALLOCATE=false KERAS_BACKEND=jax PYTHONUNBUFFERED=1
if ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" || exit 1
LOGGER=""
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 > "$W/gpu_util.csv" &
  LOGGER=$!
fi

left() { echo $(( TOTAL - ($(date +%s) - T0) )); }
DATA=.devdata/300w.npz
if [ "$SMOKE" = 1 ]; then
  STUDENT=mobilefan_lite; TEACHER=hourglass_lite; LIMIT="--limit 32"; EXTRA="--batch_size 8"
else
  STUDENT=mobilefan; TEACHER=hourglass; LIMIT=""; EXTRA="--batch_size 32"
fi
run() {  # name, then jax_train flags
  local name=$1; shift
  python3 -m experiments.jax_train --data "$DATA" --workdir "$W/$name" $LIMIT $EXTRA "$@" > "$W/$name.log" 2>&1
  local rc=$?
  echo "[$(( $(date +%s) - T0 ))s] $name exit $rc :: $(tr -d '\n ' < "$W/$name/summary.json" 2>/dev/null | head -c 600)"
  [ $rc = 0 ] || tail -n 15 "$W/$name.log"
}

PIDS=()
run student --preset "$STUDENT" --epochs 300 --warmup_epochs 5 --eval_every 2 --time_budget $(( $(left) - 40 )) &
PIDS+=($!)
run lite --preset mobilefan_lite --epochs 400 --warmup_epochs 5 --eval_every 2 --time_budget $(( $(left) - 60 )) &
PIDS+=($!)
run teacher --preset "$TEACHER" --epochs 150 --learning_rate 1e-3 --warmup_epochs 3 --eval_every 5 \
  --time_budget "$TEACHER_S"
TW="$W/teacher/best.weights.h5"
if [ -f "$TW" ]; then
  B=$(( $(left) - 45 ))
  common=(--preset "$STUDENT" --epochs "$ABL_EPOCHS" --eval_every 5 --noshrink --time_budget "$B"
          --teacher "$TW" --teacher_preset "$TEACHER")
  run abl_student "${common[@]}" &
  PIDS+=($!)
  run abl_fa "${common[@]}" --fa_weight 0.01 &
  PIDS+=($!)
  run abl_fs "${common[@]}" --fs_weight 0.001 &
  PIDS+=($!)
  run abl_both "${common[@]}" --fa_weight 0.01 --fs_weight 0.001 &
  PIDS+=($!)
fi
wait "${PIDS[@]}"
[ -n "$LOGGER" ] && kill "$LOGGER"
for n in student lite; do
  cp "$W/$n/best.weights.h5" "$OUT/${n}_best.weights.h5" 2>/dev/null
  cp "$W/$n/last.weights.h5" "$OUT/${n}_last.weights.h5" 2>/dev/null
done
tar czf "$OUT/logs.tar.gz" -C "$W" --exclude='*.h5' . && ls -la "$OUT"
echo "session done in $(( $(date +%s) - T0 ))s"
