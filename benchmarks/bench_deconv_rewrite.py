"""The exported decoder's deconvolutions: TRANSPOSE_CONV (before) vs 1x1 CONV_2D + DEPTH_TO_SPACE.

`export_tflite` writes MobileFAN's three k2/s2 deconvolutions as 1x1 convolutions
to 4C channels + DEPTH_TO_SPACE, with their BatchNorm and ReLU folded in
(`mobilefan_tf.export._DeconvAsDepthToSpace`; `deconv_as_depth_to_space=False`
is the former graph). This script exports each shipped Keras model both ways
(same calibration faces: 64 training crops of ``--data_dir`` when present,
else synthetic faces), times the two interleaved at one thread (median ms over
``--runs`` calls, after warm-up; `bench_end_to_end.interleaved_timings`) and reports the largest landmark difference
between them on ``--faces`` other faces. Validation NME of the files comes from
``python -m experiments.evaluate`` (see the model card).

    python benchmarks/bench_deconv_rewrite.py --json results/bench_deconv_rewrite.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from bench_end_to_end import interleaved_timings  # noqa: E402 - the same interleaved timer as the pipeline rows

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mobilefan_tf", "assets")
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "300w")


def faces(size: int, data_dir: str, count: int, offset: int) -> tuple[np.ndarray, str]:
    """[N, S, S, 3] float32 face crops: 300W training faces if present, else synthetic ones."""
    if os.path.isdir(data_dir):
        from mobilefan_tf.data import crop_face
        from mobilefan_tf.data.readers import read_300w
        from mobilefan_tf.predictor import read_image

        samples = read_300w(data_dir)[offset : offset + count]
        crops = [crop_face(read_image(s.image_path), landmarks=s.landmarks, output_size=size)[0] for s in samples]
        return np.stack(crops).astype(np.float32), "300w"
    from mobilefan_tf.data import synthetic_faces

    return synthetic_faces(count, image_size=size, seed=offset)[0].astype(np.float32), "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilefan_300w", "mobilefan_lite_300w"])
    parser.add_argument("--data_dir", default=DATA_DIR)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()

    import keras

    import mobilefan_tf.models  # noqa: F401 - registers the classes
    from mobilefan_tf.export import export_tflite
    from mobilefan_tf.predictor import TFLiteModel

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_deconv_")
    for name in args.models:
        model = keras.saving.load_model(os.path.join(ASSETS, f"{name}.keras"), compile=False)
        size = int(model.input_size)
        calibration, source = faces(size, args.data_dir, 64, 0)
        test, _ = faces(size, args.data_dir, args.faces, 64)
        runners, landmarks = {}, {}
        for graph, rewrite in (("transpose_conv", False), ("depth_to_space", True)):
            path = os.path.join(tmp, f"{name}_{graph}.tflite")
            export_tflite(model, path, "int8", calibration, deconv_as_depth_to_space=rewrite)
            runners[graph] = TFLiteModel(path, num_threads=1)
            landmarks[graph] = runners[graph].predict_landmarks(test)[0]
        # Interleaved, so both graphs see the same machine state.
        medians = interleaved_timings([r.predict_landmarks for r in runners.values()], test[:1], [args.runs] * 2)
        diff = np.linalg.norm(landmarks["depth_to_space"] - landmarks["transpose_conv"], axis=-1)
        row = {
            "model": name,
            "faces": source,
            **{f"{graph}_ms": median for graph, (median, _) in zip(runners, medians, strict=True)},
            "landmark_diff_px_mean": float(diff.mean()),
            "landmark_diff_px_max": float(diff.max()),
        }
        row["ratio"] = row["depth_to_space_ms"] / row["transpose_conv_ms"]
        rows.append(row)
        print(
            f"{name}: TRANSPOSE_CONV {row['transpose_conv_ms']:.2f} ms, DEPTH_TO_SPACE {row['depth_to_space_ms']:.2f} ms"
            f" (x{row['ratio']:.2f}); landmarks differ by {row['landmark_diff_px_mean']:.3f} px mean,"
            f" {row['landmark_diff_px_max']:.2f} px max ({size} px crops)",
            flush=True,
        )
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        cpu = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
        with open(args.json, "w") as f:
            json.dump({"machine": cpu, "runs": args.runs, "threads": 1, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
