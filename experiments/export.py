"""Exports a trained model for serving: SavedModel and/or TFLite (float, fp16, int8).

    python -m experiments.export --model runs/distill/best.keras --format saved_model,tflite \\
        --quantize none,int8
    python -m experiments.export --smoke   # a tiny untrained model unless --model

Writes to ``--workdir`` (default runs/export): ``saved_model/`` and
``model_<quantize>.tflite`` (each with its metadata JSON), via
`mobilefan_tf.export`. int8 is calibrated on face crops of the 300W
training split when ``--data_dir`` exists, else on synthetic faces.
"""

import os

import numpy as np
from absl import app, flags

from experiments import script_setup

script_setup.define_flags("export", preset="mobilefan")
flags.DEFINE_string("model", None, "Model to export (.keras). Required unless --smoke.")
flags.DEFINE_list("format", ["saved_model", "tflite"], "What to write: saved_model and/or tflite.")
flags.DEFINE_list("quantize", ["none"], "TFLite variants: none, fp16, int8.")
flags.DEFINE_integer("calibration_faces", 64, "Faces used to calibrate int8.")
FLAGS = flags.FLAGS


def calibration_images(size: int) -> np.ndarray | None:
    """[N, S, S, 3] training-face crops for int8 calibration, or None (synthetic default)."""
    from mobilefan_tf.data import crop_face

    if not FLAGS.smoke and not os.path.isdir(FLAGS.data_dir):
        return None
    samples = script_setup.load_samples("train")[: FLAGS.calibration_faces]
    photos = _photos(samples)
    return np.stack(
        [crop_face(p, landmarks=s.landmarks, output_size=size)[0] for p, s in zip(photos, samples, strict=True)]
    ).astype(np.float32)


def _photos(samples):
    from mobilefan_tf.predictor import read_image

    return [s.image if s.image is not None else read_image(s.image_path) for s in samples]


def main(argv):
    del argv
    import keras

    from mobilefan_tf.export import QUANTIZE_MODES, export_saved_model, export_tflite

    if not FLAGS.model and not FLAGS.smoke:
        raise app.UsageError("--model PATH.keras is required (or --smoke)")
    unknown = [f for f in FLAGS.format if f not in ("saved_model", "tflite")] + [
        q for q in FLAGS.quantize if q not in QUANTIZE_MODES
    ]
    if unknown:
        raise app.UsageError(f"unknown --format/--quantize value(s) {unknown}")
    if FLAGS.model:
        import mobilefan_tf.models  # noqa: F401 - registers the model classes

        model = keras.saving.load_model(FLAGS.model, compile=False)
    else:
        model = script_setup.build(FLAGS.preset, smoke=True)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    if "saved_model" in FLAGS.format:
        print("wrote", export_saved_model(model, os.path.join(FLAGS.workdir, "saved_model")))
    if "tflite" in FLAGS.format:
        for mode in FLAGS.quantize:
            images = calibration_images(model.input_size) if mode == "int8" else None
            path = os.path.join(FLAGS.workdir, f"model_{mode}.tflite")
            print("wrote", export_tflite(model, path, quantize=mode, representative_images=images))


if __name__ == "__main__":
    app.run(main)
