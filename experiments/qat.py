"""Quantisation-aware fine-tuning of a trained student, against post-training int8.

    # in the QAT venv (WORKSPACE.md): tf_keras + tensorflow-model-optimization
    /work/venv-qat/bin/python -m experiments.qat --epochs 3 --workdir runs/qat
    /work/venv-qat/bin/python -m experiments.qat --smoke     # tiny model, synthetic faces

Steps (`mobilefan_tf.qat`): rebuild the Keras 3 ``--model`` (default: the
shipped lite student) as tf_keras, check its heatmaps match to 1e-5,
``quantize_model``, fine-tune on the training faces of ``--dataset`` (the
validation faces, every 10th by sorted name, are never trained on), export
int8 TFLite; export the same float model with post-training int8
(`export.export_tflite`, calibrated on training faces); score the float
model and both int8 files on the validation faces (one pass, no flip test:
what the exported graphs do).

Writes to ``--workdir``: ``qat_int8.tflite``, ``ptq_int8.tflite`` (each with
its ``.json``), ``qat.weights.h5`` (the fine-tuned tf_keras QAT model) and
``results.json``: NME / FR / AUC per model, file sizes, the parity
difference, and the NME of each facial part (``groups``) per model, which
shows where int8 loses the most.

``--cluster N`` runs weight clustering instead (item 5 of issue 13): every
conv / deconv kernel is fine-tuned to N shared values (tfmot
``cluster_weights``), stripped, copied back into the Keras 3 model and
exported with post-training int8 as ``cluster_int8.tflite``; ``gzip_bytes``
shows the size a compressed download would have.
"""

import json
import math
import os

import numpy as np
from absl import app, flags

from experiments import script_setup as common

common.define_flags("qat", preset="mobilefan_lite")
flags.DEFINE_string("model", None, "Trained Keras 3 student (.keras); default: the shipped lite 300W model.")
flags.DEFINE_float("learning_rate", 1e-4, "Constant learning rate of the QAT fine-tune.")
flags.DEFINE_bool("augment", True, "Augment the fine-tuning faces.")
flags.DEFINE_integer("seed", 0, "Seed of shuffling and augmentation.")
flags.DEFINE_integer("calibration_faces", 64, "Training faces that calibrate post-training int8.")
flags.DEFINE_integer("cluster", None, "Weight clustering instead of QAT: every conv kernel shares this many values "
                     "(tfmot cluster_weights), fine-tuned, stripped, copied back to Keras 3 and exported as "
                     "post-training int8 (cluster_int8.tflite); sizes also reported gzip-compressed.")
FLAGS = flags.FLAGS


def load_student():
    import keras

    import mobilefan_tf.models  # noqa: F401 - registers MobileFAN for load_model

    if FLAGS.smoke and not FLAGS.model:
        return common.build(FLAGS.preset, smoke=True)
    if FLAGS.model:
        path = FLAGS.model
    else:
        from mobilefan_tf.default_model import ASSETS_DIR

        path = os.path.join(ASSETS_DIR, "mobilefan_lite_300w.keras")
    if not os.path.isfile(path):
        raise app.UsageError(f"--model file not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError) as err:
        raise app.UsageError(f"{path}: cannot load ({str(err).strip().splitlines()[0]})") from None


def gzip_size(path: str) -> int:
    """Bytes of the file gzip-compressed (what clustering shrinks: repeated kernel values)."""
    import gzip

    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def part_errors(result: dict, samples, spec) -> dict[str, float]:
    """Mean NME of each facial part (`spec.groups`) of one `evaluate_model(..., return_landmarks=True)` result."""
    from mobilefan_tf.metrics import normalizer

    gt = np.stack([s.landmarks for s in samples]).astype(np.float64)
    err = np.linalg.norm(result["landmarks"] - gt, axis=-1) / normalizer(gt, spec, result["norm"])[:, None]
    return {name: float(err[:, list(idx)].mean()) for name, idx in spec.groups.items()}


def main(argv):
    del argv
    from mobilefan_tf import qat

    try:
        tf_keras, _ = qat.import_qat()
    except ImportError as err:
        raise app.UsageError(str(err)) from None
    from mobilefan_tf.data import AugmentConfig, build_dataset, crop_face
    from mobilefan_tf.evaluation import _sample_image, evaluate_model
    from mobilefan_tf.export import export_tflite, model_metadata
    from mobilefan_tf.predictor import load_landmark_model
    from mobilefan_tf.training import TrainConfig

    spec = common.dataset_spec()
    model = load_student()
    rebuilt = qat.rebuild_tf_keras(model)
    diff = qat.check_parity(model, rebuilt)
    print(f"tf_keras rebuild: max |heatmap difference| {diff:.3g} (limit 1e-5)")
    quantized = qat.cluster(rebuilt, FLAGS.cluster) if FLAGS.cluster else qat.quantize(rebuilt)

    train, val = common.train_val_samples()
    size = int(model.input_size)
    batch = FLAGS.batch_size or (8 if FLAGS.smoke else 16)
    epochs = FLAGS.epochs or (1 if FLAGS.smoke else 3)
    config = {"spec": spec, "input_size": size, "sigma": TrainConfig().sigma, "batch_size": batch}
    augment = AugmentConfig() if FLAGS.augment else AugmentConfig.none()
    train_ds = build_dataset(train, augment=augment, shuffle=True, seed=FLAGS.seed, repeat=True, **config)
    val_ds = build_dataset(val, shuffle=False, cache=True, **config)
    quantized.compile(tf_keras.optimizers.Adam(FLAGS.learning_rate), loss="mse")
    steps = math.ceil(len(train) / batch)
    history = quantized.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps, verbose=2)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    quantized.save_weights(os.path.join(FLAGS.workdir, "qat.weights.h5"))

    results = {"parity_max_abs_diff": diff, "epochs": epochs, "learning_rate": FLAGS.learning_rate,
               "cluster": FLAGS.cluster, "val_faces": len(val),
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}, "models": {}}

    def score(label, runner, path=None):
        res = evaluate_model(runner, val, spec=spec, return_landmarks=True)
        row = {k: res[k] for k in ("nme", "failure_rate", "auc", "num_images", "norm")}
        row.update(groups=part_errors(res, val, spec), size_bytes=None, gzip_bytes=None)
        if path:
            row.update(size_bytes=os.path.getsize(path), gzip_bytes=gzip_size(path))
        results["models"][label] = row
        print(f"{label:>12}: NME {100 * row['nme']:.3f}%  FR {100 * row['failure_rate']:.2f}%  AUC {row['auc']:.4f}"
              + (f"  {row['size_bytes'] / 1e6:.2f} MB ({row['gzip_bytes'] / 1e6:.2f} MB gzip)" if path else ""))

    calib = np.stack([crop_face(_sample_image(s), landmarks=s.landmarks, output_size=size)[0]
                      for s in train[: FLAGS.calibration_faces]]).astype(np.float32)
    score("float", model)
    ptq_path = export_tflite(model, os.path.join(FLAGS.workdir, "ptq_int8.tflite"), quantize="int8",
                             representative_images=calib)
    score("ptq_int8", load_landmark_model(ptq_path), ptq_path)
    if FLAGS.cluster:  # the clustered weights back in the Keras 3 model, then the same int8 export
        qat.copy_back(qat.strip_clustering(quantized), model)
        name = "cluster_int8"
        path = export_tflite(model, os.path.join(FLAGS.workdir, f"{name}.tflite"), quantize="int8",
                             representative_images=calib)
    else:
        name = "qat_int8"
        path = qat.export_qat_tflite(quantized, os.path.join(FLAGS.workdir, f"{name}.tflite"), model_metadata(model))
    score(name, load_landmark_model(path), path)
    base = results["models"]["float"]["groups"]
    for label in ("ptq_int8", name):
        loss = {g: results["models"][label]["groups"][g] - base[g] for g in base}
        worst = max(loss, key=loss.get)
        results["models"][label]["worst_group"] = worst
        print(f"{label}: loses most on {worst} (+{100 * loss[worst]:.3f} NME points over float)")
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {FLAGS.workdir}/results.json, {name}.tflite, ptq_int8.tflite")


if __name__ == "__main__":
    app.run(main)
