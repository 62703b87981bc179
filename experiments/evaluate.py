"""Scores one or more models on a test split of ``--dataset``: JSON metrics, CED plot, best/worst faces.

    python -m experiments.evaluate --model runs/train_student/best.keras \\
        --model runs/distill/best.keras --split full
    python -m experiments.evaluate --smoke   # synthetic faces; a tiny untrained model unless --model

Writes to ``--workdir`` (default runs/evaluate):
  * ``results.json``: per model, NME / failure rate / AUC at ``--threshold``
    and the per-image NME (`mobilefan_tf.evaluation.evaluate_model`);
  * ``ced.png``: every model's CED curve on one plot;
  * ``overlay_<model>.png``: each model's best and worst faces.
``--model`` takes .keras files, SavedModel folders or .tflite files. By default
each face is averaged with its mirror image (``--flip_test on``, as
``mobilefan evaluate`` does); ``--flip_test both`` scores one pass too.
``--face_size 64 --face_size 32`` also scores every model on the same faces
shrunk so that their landmark box is 64 (32) pixels (`shrink_faces`: how small
a face in a photo may be), as rows ``<model>@64px``; the plots show full size only.
"""

import json
import os
import re

from absl import app, flags

from experiments import script_setup

script_setup.define_flags("evaluate", preset="mobilefan")
flags.DEFINE_multi_string("model", [], "Model to evaluate (repeat the flag for several).")
flags.DEFINE_enum("split", "full", ["common", "challenging", "full", "all", "test", "val"],
                  "300W split; WFLW / COFW read their test file for any but val (val: the training hold-out; "
                  "spec-file folders and COCO files: all their faces).")
flags.DEFINE_float("threshold", 0.08, "NME threshold of the failure rate and AUC.")
flags.DEFINE_string("norm", None, "NME normaliser: inter_ocular, inter_pupil or bbox_diagonal (default: the "
                    "dataset's: COFW inter-pupil, the others inter-ocular).")
flags.DEFINE_enum("flip_test", "on", ["on", "off", "both"], "Average each face with its mirror image (on, as "
                  "`mobilefan evaluate` does), run once (off), or score both ways (the flip rows get a _flip suffix).")
flags.DEFINE_multi_integer("face_size", [], "Also score on the faces shrunk to this landmark-box side in pixels "
                           "(repeat for several).")
FLAGS = flags.FLAGS


class _Photos:
    """Lazy list of the samples' RGB photos (only the drawn faces get read)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from mobilefan_tf.predictor import read_image

        sample = self.samples[i]
        return sample.image if sample.image is not None else read_image(sample.image_path)


def model_name(path: str) -> str:
    """``runs/distill/best.keras`` -> ``distill_best`` (file-name safe)."""
    parts = os.path.normpath(path).split(os.sep)[-2:]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(os.path.splitext(p)[0] for p in parts))


def eval_samples() -> list:
    if FLAGS.split == "val":
        return script_setup.train_val_samples()[1]
    return script_setup.load_samples(FLAGS.split)


def main(argv):
    del argv
    from mobilefan_tf.evaluation import evaluate_model, overlay_grid, plot_ced, shrink_faces
    from mobilefan_tf.flip_averaging import FlipTestModel
    from mobilefan_tf.predictor import load_landmark_model

    if not FLAGS.model and not FLAGS.smoke:
        raise app.UsageError("give at least one --model (or --smoke)")
    samples = eval_samples()
    loaded = {}
    for path in FLAGS.model:
        try:
            loaded[model_name(path)] = load_landmark_model(path)
        except (OSError, ValueError) as err:
            raise app.UsageError(str(err)) from None
    if not loaded:
        loaded["untrained_smoke"] = script_setup.build(FLAGS.preset, smoke=True)
    models = {}
    for name, model in loaded.items():
        if FLAGS.flip_test in ("off", "both"):
            models[name] = model
        if FLAGS.flip_test in ("on", "both"):
            models[name + "_flip" if FLAGS.flip_test == "both" else name] = FlipTestModel(model)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    results, summary = {}, {}
    for name, model in models.items():
        res = evaluate_model(
            model, samples, spec=script_setup.SPEC, threshold=FLAGS.threshold, norm=FLAGS.norm, return_landmarks=True
        )
        predictions = res.pop("landmarks")
        results[name] = res
        summary[name] = {k: res[k] for k in ("nme", "failure_rate", "auc", "num_images", "flip_test")}
        nmes = [p["nme"] for p in res["per_image"]]
        overlay_grid(
            _Photos(samples), predictions, nmes, os.path.join(FLAGS.workdir, f"overlay_{name}.png"),
            ground_truth=[s.landmarks for s in samples],
        )
        print(f"{name}: NME {100 * res['nme']:.2f}%  FR {100 * res['failure_rate']:.2f}%  AUC {res['auc']:.4f}")
    for side in FLAGS.face_size:
        try:
            small = shrink_faces(samples, side)
        except ValueError as err:
            raise app.UsageError(f"--face_size: {err}") from None
        for name, model in models.items():
            res = evaluate_model(model, small, spec=script_setup.SPEC, threshold=FLAGS.threshold, norm=FLAGS.norm)
            summary[f"{name}@{side}px"] = {k: res[k] for k in ("nme", "failure_rate", "auc", "num_images", "flip_test")}
            print(f"{name} @ {side} px: NME {100 * res['nme']:.2f}%  FR {100 * res['failure_rate']:.2f}%  "
                  f"AUC {res['auc']:.4f}")
    plot_ced(results, os.path.join(FLAGS.workdir, "ced.png"), threshold=FLAGS.threshold, title="synthetic faces" if FLAGS.smoke else f"{script_setup.dataset_spec().name} {FLAGS.split}")
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump({"split": FLAGS.split, "summary": summary, "models": results}, f, indent=1)
    print(f"wrote {FLAGS.workdir}/results.json, ced.png and overlay_*.png")


if __name__ == "__main__":
    app.run(main)
