"""Distils a trained landmark model into a MobileFAN student (FAD, FSD and output KD).

    # The shipped 256 px default teaching the 128 px lite student (cross-resolution):
    python -m experiments.distill --preset mobilefan_lite --teacher mobilefan_tf/assets/mobilefan_300w.keras \\
        --kd_weight 1 --epochs 100 --learning_rate 2e-3 --warmup_epochs 3 --workdir runs/distill_lite
    # ... plus unlabelled face crops (or photos: --unlabeled_box detector):
    python -m experiments.distill ... --unlabeled path/to/faces/
    python -m experiments.distill --smoke   # tiny untrained teacher at 2x the student's size, unless --teacher
    # On the CPU, output KD with the teacher run by TFLite in the input pipeline (same targets, faster):
    python -m experiments.distill ... --kd_weight 1 --teacher_runtime tflite

The teacher is any landmark `.keras` (a teacher preset or a student, e.g. the
shipped default) with the student's K and an input r = 1, 2, ... times the
student's; it stays frozen and sees the same augmented face r times larger.
Uses `keras.Model.fit` with `training.make_callbacks`: Keras progress bar,
log.csv (loss, heatmap_loss, fa_loss, fs_loss, kd_loss, nme and their val_
twins), TensorBoard, best.keras (best val NME) and last.keras, which hold the
*student alone* (see `Distiller.save`), and backup/ for resuming a killed
run. See `experiments.script_setup` for the shared flags.

Default weights (measured, see MODEL_CARD.md "Gradient balance"): output KD 1
(the soft targets are heatmaps like the ground truth's, so equal weight is
the natural scale), FAD and FSD off unless asked for; every teacher term
ramps in over ``--ramp_epochs``.
"""

import os

from absl import app, flags

from distillation import Distiller, load_teacher
from experiments import script_setup

script_setup.define_flags("distill", preset="mobilefan")
script_setup.define_training_flags()
flags.DEFINE_string("teacher", None, "Teacher: any landmark model .keras (e.g. the shipped default). "
                    "Required unless --smoke.")
flags.DEFINE_float("kd_weight", 1.0, "Weight of output-level KD (teacher heatmaps as soft targets).")
flags.DEFINE_float("fa_weight", 0.0, "Weight of the feature-aligned (FAD) loss (relative MSE; try 0.01-0.1).")
flags.DEFINE_float(
    "fs_weight", 0.0,
    "Weight of the feature-similarity (FSD) loss. The paper's 0.01 stalled learning from scratch here: at init "
    "0.01 x FSD has ~20x the heatmap loss's gradient norm (MODEL_CARD.md); try 1e-4-1e-3.",
)
flags.DEFINE_bool("fa_normalize", True, "Relative FAD: MSE / mean square of the teacher feature (scale-free).")
flags.DEFINE_bool("fs_normalize", False, "Relative FSD: MSE / mean square of the teacher's similarity matrix.")
flags.DEFINE_integer("fs_pool_size", None, "Average-pool (student-grid) features by this factor before FSD.")
flags.DEFINE_list("stages", ["feat1", "feat2", "feat3"], "Decoder features to distil (FAD / FSD).")
flags.DEFINE_float("ramp_epochs", 1.0, "Teacher terms grow linearly from 0 to their weights over these epochs.")
flags.DEFINE_string("unlabeled", None, "Folder of images without landmarks, trained on with the teacher's targets only.")
flags.DEFINE_enum("unlabeled_box", "teacher", ["teacher", "detector"],
                  "How to frame unlabelled faces: 'teacher' (each image is a face crop) or 'detector' (photos).")
flags.DEFINE_integer("max_unlabeled", None, "Use at most this many unlabelled images.")
flags.DEFINE_enum("teacher_runtime", "keras", ["keras", "tflite"],
                  "Where the teacher runs: in the training step (keras), or as a float32 TFLite interpreter in the "
                  "input pipeline (tflite: output KD only, CPU training; ~2x cheaper teacher pass, see "
                  "distillation/tflite_teacher.py).")
FLAGS = flags.FLAGS


def smoke_teacher(student):
    """A tiny untrained MobileFAN at twice the student's input size, same layout (--smoke without --teacher)."""
    from mobilefan_tf.models import build_model

    return build_model("mobilefan", num_keypoints=student.num_keypoints, spec=script_setup.SPEC,
                       input_size=2 * student.input_size, width=0.35, deconv_filters=16, name="smoke_teacher")


def load_unlabeled(teacher):
    """The --unlabeled faces as `FaceSample`s (framed by the teacher), or [] without the flag."""
    if not FLAGS.unlabeled:
        return []
    from distillation.unlabeled import read_unlabeled

    try:
        faces = read_unlabeled(FLAGS.unlabeled, teacher, box=FLAGS.unlabeled_box, teacher_path=FLAGS.teacher,
                               max_images=FLAGS.max_unlabeled)
    except (OSError, ValueError) as err:
        raise app.UsageError(f"--unlabeled: {err}") from None
    print(f"unlabelled faces: {len(faces)} from {FLAGS.unlabeled}")
    return faces


def tflite_teacher_data(teacher, batch_size: int, train_ds, val_ds):
    """Both datasets with the teacher's heatmaps (TFLite) in place of its images (--teacher_runtime tflite)."""
    from distillation import TFLiteTeacher, with_teacher_heatmaps

    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS") or os.cpu_count() or 1)
    runner = TFLiteTeacher(teacher, batch_size, num_threads=threads)
    print(f"teacher: float32 TFLite in the input pipeline, batch {batch_size}, {threads} thread(s)")
    return with_teacher_heatmaps(train_ds, runner), with_teacher_heatmaps(val_ds, runner)


def main(argv):
    del argv
    from mobilefan_tf.training import build_for_strategy, make_callbacks, make_optimizer

    if not FLAGS.teacher and not FLAGS.smoke:
        raise app.UsageError("--teacher PATH.keras is required (or --smoke)")
    if FLAGS.teacher_runtime == "tflite" and (FLAGS.fa_weight or FLAGS.fs_weight):  # before any data or model loads
        raise app.UsageError("--teacher_runtime tflite serves output KD only: FAD / FSD need the teacher's features "
                             "(set --fa_weight 0 --fs_weight 0, or use --teacher_runtime keras)")
    config = script_setup.train_config()
    strategy = script_setup.get_strategy(FLAGS.strategy)
    with strategy.scope():
        student = script_setup.build(FLAGS.preset, FLAGS.smoke)
        try:
            teacher = load_teacher(FLAGS.teacher) if FLAGS.teacher else smoke_teacher(student)
        except (OSError, ValueError) as err:
            raise app.UsageError(f"--teacher: {err}") from None
        if FLAGS.init_weights:
            script_setup.load_init_weights(student, FLAGS.init_weights)
        try:
            distiller = Distiller(student, teacher)  # checks K and the resolution ratio
        except ValueError as err:
            raise app.UsageError(str(err)) from None
    unlabeled = load_unlabeled(teacher)
    train_ds, val_ds, steps = script_setup.training_data(
        student.input_size, config, FLAGS.workdir, teacher_input_size=teacher.input_size, unlabeled=unlabeled
    )
    if FLAGS.teacher_runtime == "tflite":
        train_ds, val_ds = tflite_teacher_data(teacher, config.batch_size, train_ds, val_ds)
    with strategy.scope():
        distiller.compile(
            make_optimizer(config, steps),
            fa_weight=FLAGS.fa_weight,
            fs_weight=FLAGS.fs_weight,
            kd_weight=FLAGS.kd_weight,
            fs_pool_size=FLAGS.fs_pool_size,
            fa_normalize=FLAGS.fa_normalize,
            fs_normalize=FLAGS.fs_normalize,
            stages=FLAGS.stages,
            ramp_steps=int(FLAGS.ramp_epochs * steps),
            sigma=config.sigma,
            jit_compile=False,
        )
    build_for_strategy(distiller, train_ds)  # multi_worker: Keras cannot build from a distributed batch
    history = distiller.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=make_callbacks(FLAGS.workdir, monitor="val_nme", keep_epoch_weights=FLAGS.keep_epoch_weights,
                                 weights_of=student),
    )
    script_setup.print_history(history)
    print(f"best student: {os.path.join(FLAGS.workdir, 'best.keras')}")


if __name__ == "__main__":
    app.run(main)
