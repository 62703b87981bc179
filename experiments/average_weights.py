"""Averages the last epochs of a training run (SWA) and re-estimates BatchNorm.

    python -m experiments.train_student --workdir runs/swa --schedule constant \\
        --learning_rate 3e-4 --init_weights BEST.keras --keep_epoch_weights
    python -m experiments.average_weights --workdir runs/swa --first_epoch 6

Reads ``WORKDIR/epochs/epoch_NNN.weights.h5`` (1-based epochs, from
``--keep_epoch_weights``) and ``WORKDIR/last.keras`` (the architecture), and
writes ``WORKDIR/averaged.keras`` and ``WORKDIR/averaged.json``: validation
NME of the average, with and without the flip test, next to each averaged
epoch's own validation NME from ``log.csv``. See `mobilefan_tf.averaging`.
"""

import csv
import glob
import json
import os
import re

from absl import app, flags

from experiments import script_setup

script_setup.define_flags("average_weights", preset="mobilefan")
flags.DEFINE_integer("first_epoch", 1, "First epoch (1-based, as in the file names) of the average.")
flags.DEFINE_integer("last_epoch", None, "Last epoch of the average (default: the last one kept).")
flags.DEFINE_integer("bn_batches", 100, "Training batches for the BatchNorm re-estimate.")
flags.DEFINE_bool("augment", True, "Augment the BatchNorm batches as in training.")
flags.DEFINE_integer("seed", 0, "Seed of the BatchNorm batches' shuffling and augmentation.")
FLAGS = flags.FLAGS


def epoch_files(workdir: str, first: int, last: int | None) -> dict[int, str]:
    """{epoch: path} of the kept weight files with first <= epoch <= last."""
    found = {}
    for path in glob.glob(os.path.join(workdir, "epochs", "epoch_*.weights.h5")):
        epoch = int(re.search(r"epoch_(\d+)\.weights\.h5$", path).group(1))
        if epoch >= first and (last is None or epoch <= last):
            found[epoch] = path
    return dict(sorted(found.items()))


def logged_val_nme(workdir: str) -> dict[int, float]:
    """{1-based epoch: val_nme} from the run's log.csv (empty if absent)."""
    path = os.path.join(workdir, "log.csv")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return {int(row["epoch"]) + 1: float(row["val_nme"]) for row in csv.DictReader(f) if row.get("val_nme")}


def main(argv):
    del argv
    import keras

    import mobilefan_tf.models  # noqa: F401 - registers the model classes
    from mobilefan_tf.averaging import average_weight_files, recalibrate_batchnorm
    from mobilefan_tf.evaluation import evaluate_model
    from mobilefan_tf.flip_averaging import FlipTestModel
    from mobilefan_tf.training import TrainConfig

    workdir = FLAGS.workdir
    files = epoch_files(workdir, FLAGS.first_epoch, FLAGS.last_epoch)
    if not files:
        raise app.UsageError(f"{workdir}/epochs: no epoch_NNN.weights.h5 in epochs {FLAGS.first_epoch}.."
                             f"{FLAGS.last_epoch or 'last'} (train with --keep_epoch_weights)")
    last = os.path.join(workdir, "last.keras")
    if not os.path.isfile(last):
        raise app.UsageError(f"{last}: not found (the architecture to average into)")
    try:
        model = keras.saving.load_model(last, compile=False)
    except Exception as err:  # noqa: BLE001 - the loader raises many types; keep one line naming the file
        raise app.UsageError(f"{last}: cannot load: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}") from None
    try:
        average_weight_files(model, list(files.values()))
    except ValueError as err:
        raise app.UsageError(str(err)) from None

    config = TrainConfig(batch_size=FLAGS.batch_size or 16, seed=FLAGS.seed)
    train_ds, _, _ = script_setup.training_data(model.input_size, config, os.path.join(workdir, "averaged_data"))
    used = recalibrate_batchnorm(model, train_ds, max_batches=FLAGS.bn_batches)
    out = os.path.join(workdir, "averaged.keras")
    model.save(out)

    val = script_setup.train_val_samples()[1]
    once = evaluate_model(model, val, spec=script_setup.SPEC)
    flip = evaluate_model(FlipTestModel(model), val, spec=script_setup.SPEC)
    logged = logged_val_nme(workdir)
    summary = {
        "epochs": list(files),
        "bn_batches": used,
        "val_nme": once["nme"],
        "val_nme_flip_test": flip["nme"],
        "failure_rate": once["failure_rate"],
        "auc": once["auc"],
        "failure_rate_flip_test": flip["failure_rate"],
        "auc_flip_test": flip["auc"],
        "epoch_val_nme": {e: logged[e] for e in files if e in logged},
    }
    with open(os.path.join(workdir, "averaged.json"), "w") as f:
        json.dump(summary, f, indent=1)
    alone = summary["epoch_val_nme"]
    best = f"; best single epoch {100 * min(alone.values()):.3f} %" if alone else ""
    print(f"averaged epochs {min(files)}..{max(files)} ({len(files)} files), BatchNorm from {used} batches")
    print(f"validation NME {100 * once['nme']:.3f} % (flip test {100 * flip['nme']:.3f} %){best}")
    print(f"wrote {out} and {os.path.join(workdir, 'averaged.json')}")


if __name__ == "__main__":
    app.run(main)
