"""Distils a trained teacher into a MobileFAN student (FAD + FSD, the paper's method).

    python -m experiments.distill --teacher runs/train_teacher/best.keras \\
        --preset mobilefan --fa_weight 0.01 --fs_weight 0.01 --fs_pool_size 2
    python -m experiments.distill --smoke   # tiny untrained teacher unless --teacher

The teacher (any landmark model with the student's K and input size) stays
frozen. Uses `keras.Model.fit` with `training.make_callbacks`: Keras progress
bar, log.csv (loss, heatmap_loss, fa_loss, fs_loss, nme and their val_
twins), TensorBoard, best.keras (best val NME) and last.keras, which hold
the *student alone* (see `Distiller.save`), and backup/ for resuming a
killed run. See `experiments.common` for the shared flags.
"""

import os

from absl import app, flags

from distillation import Distiller, load_teacher
from experiments import common

common.define_flags("distill", preset="mobilefan")
common.define_training_flags(epoch_weights=False)
flags.DEFINE_string("teacher", None, "Teacher checkpoint (.keras). Required unless --smoke.")
flags.DEFINE_float("fa_weight", 0.01, "Weight of the feature-aligned (FAD) loss.")
flags.DEFINE_float(
    "fs_weight",
    0.01,
    "Weight of the feature-similarity (FSD) loss (the paper's 0.01). From scratch use ~0.001: at init "
    "0.01 x FSD has ~20x the heatmap loss's gradient norm and stalled learning (measured, MODEL_CARD.md).",
)
flags.DEFINE_bool("fa_normalize", True, "Relative FAD: MSE / mean square of the teacher feature (scale-free).")
flags.DEFINE_integer("fs_pool_size", None, "Average-pool features by this factor before FSD (saves memory).")
flags.DEFINE_list("stages", ["feat1", "feat2", "feat3"], "Decoder features to distil.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from mobilefan_tf.training import make_callbacks, make_optimizer

    if not FLAGS.teacher and not FLAGS.smoke:
        raise app.UsageError("--teacher PATH.keras is required (or --smoke)")
    config = common.train_config()
    strategy = common.get_strategy(FLAGS.strategy)
    with strategy.scope():
        teacher = load_teacher(FLAGS.teacher) if FLAGS.teacher else common.build("hourglass", smoke=True)
        student = common.build(FLAGS.preset, FLAGS.smoke)
        if FLAGS.init_weights:
            common.load_init_weights(student, FLAGS.init_weights)
        distiller = Distiller(student, teacher)  # checks K and input size
    train_ds, val_ds, steps = common.training_data(student.input_size, config, FLAGS.workdir)
    with strategy.scope():
        distiller.compile(
            make_optimizer(config, steps),
            fa_weight=FLAGS.fa_weight,
            fs_weight=FLAGS.fs_weight,
            fs_pool_size=FLAGS.fs_pool_size,
            fa_normalize=FLAGS.fa_normalize,
            stages=FLAGS.stages,
        )
    history = distiller.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=make_callbacks(FLAGS.workdir, monitor="val_nme"),
    )
    common.print_history(history)
    print(f"best student: {os.path.join(FLAGS.workdir, 'best.keras')}")


if __name__ == "__main__":
    app.run(main)
