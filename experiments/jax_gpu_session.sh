#!/usr/bin/env bash
# One GPU lease, the training jobs of issue #6, inside one wall-clock budget.
#
# Runs on a machine with JAX + CUDA and no TensorFlow: the ordinary experiment
# scripts under KERAS_BACKEND=jax (model.fit + the NumPy feeder, see
# experiments/common.py). Needs .devdata/300w.npz
# (python -m experiments.pack_faces --out .devdata/300w.npz) and, if keras is
# missing there, its wheels in .whl/.
#
#   OUT=/somewhere TOTAL=560 bash experiments/jax_gpu_session.sh
#
# Concurrently: the paper student (mobilefan, 256 px) and the lite student
# (128 px), each as long as the budget allows; the hourglass teacher (256 px)
# for TEACHER_S seconds, then the four ablation rows of the paper student
# (alone, +FAD, +FSD, +both; ABL_EPOCHS each, same seed) against that teacher
# (experiments.distill: needs the backend-neutral Distiller).
# Everything lands in $OUT: the students' .keras checkpoints and one tar of logs.
set -u
OUT=${OUT:-runs/gpu_session}
TOTAL=${TOTAL:-560}          # seconds for the whole session
TEACHER_S=${TEACHER_S:-200}  # teacher training budget
ABL_EPOCHS=${ABL_EPOCHS:-30}
SMOKE=${SMOKE:-0}            # 1: tiny CPU rehearsal of this script (--smoke: synthetic faces, tiny models)
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
if [ "$SMOKE" = 1 ]; then
  STUDENT=mobilefan_lite; TEACHER=hourglass_lite; DATA="--smoke"; EXTRA="--batch_size 8"
else
  STUDENT=mobilefan; TEACHER=hourglass; DATA="--data_dir .devdata/300w.npz"; EXTRA="--batch_size 32"
fi
run() {  # name, script, then its flags
  local name=$1 script=$2; shift 2
  python3 -m "experiments.$script" $DATA --workdir "$W/$name" $EXTRA "$@" > "$W/$name.log" 2>&1
  local rc=$?
  echo "[$(( $(date +%s) - T0 ))s] $name exit $rc :: $(tail -n 1 "$W/$name/log.csv" 2>/dev/null)"
  [ $rc = 0 ] || tail -n 15 "$W/$name.log"
}

PIDS=()
run student train_student --preset "$STUDENT" --epochs 300 --warmup_epochs 5 --time_budget $(( $(left) - 40 )) &
PIDS+=($!)
run lite train_student --preset mobilefan_lite --epochs 400 --warmup_epochs 5 --time_budget $(( $(left) - 60 )) &
PIDS+=($!)
run teacher train_teacher --preset "$TEACHER" --epochs 150 --learning_rate 1e-3 --warmup_epochs 3 \
  --time_budget "$TEACHER_S"
TW="$W/teacher/best.keras"
if [ -f "$TW" ]; then
  B=$(( $(left) - 45 ))
  common=(--preset "$STUDENT" --epochs "$ABL_EPOCHS" --time_budget "$B" --teacher "$TW")
  run abl_student distill "${common[@]}" --fa_weight 0 --fs_weight 0 &
  PIDS+=($!)
  run abl_fa distill "${common[@]}" --fa_weight 0.01 --fs_weight 0 &
  PIDS+=($!)
  run abl_fs distill "${common[@]}" --fa_weight 0 --fs_weight 0.001 &
  PIDS+=($!)
  run abl_both distill "${common[@]}" --fa_weight 0.01 --fs_weight 0.001 &
  PIDS+=($!)
fi
wait "${PIDS[@]}"
[ -n "$LOGGER" ] && kill "$LOGGER"
for n in student lite; do
  cp "$W/$n/best.keras" "$OUT/${n}_best.keras" 2>/dev/null
  cp "$W/$n/last.keras" "$OUT/${n}_last.keras" 2>/dev/null
done
tar czf "$OUT/logs.tar.gz" -C "$W" --exclude='*.keras' --exclude='*.h5' --exclude=backup . && ls -la "$OUT"
echo "session done in $(( $(date +%s) - T0 ))s"
