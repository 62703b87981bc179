"""How much DARK should smooth: validation NME of the shipped models against the decoder's blur.

DARK (`mobilefan_tf.heatmaps.decode_heatmaps`) blurs the predicted heatmap around
its peak before the Newton step on the log-map. A Gaussian target keeps its
centre under any blur, but predicted maps are not Gaussians: more blur averages
out their noise, too much flattens the peak. This script runs each shipped Keras
model once on the 201 validation faces (every 10th 300W training face by name,
as `experiments.evaluate --split val`) and on their mirror images, keeps the
heatmaps, and decodes them with each (sigma, radius): NME one pass and with the
flip test, the paired gain over the former default (sigma 1.0 cut at radius 3)
with its standard error, and a 2-fold check that the choice is not fitted to
these faces (pick sigma on one random half, score the other; 200 splits). It
also times the two decoders side by side as float TFLite graphs (one thread,
batch 1, median ms), since the radius sets the window each peak reads.

    python benchmarks/bench_decode_sigma.py --json results/bench_decode_sigma.json   # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from mobilefan_tf.heatmaps import DEFAULT_BLUR_SIGMA, decode_heatmaps, decode_to_input  # noqa: E402

FORMER = (1.0, 3)  # sigma, radius of the decoder before 2026-12-08 (cut at 3 sigma)
GRID = [FORMER, (0.5, None), (0.75, None), (1.25, 3), (1.5, 3), (2.0, 3), (2.0, 4), (2.5, 3), (3.0, 3), (1.5, 2)]


def validation_faces(data_dir: str) -> list:
    from mobilefan_tf.data import split_train_val
    from mobilefan_tf.data.datasets import load_dataset

    _, samples = load_dataset("300w", data_dir, split="train")
    return split_train_val(list(samples), every=10)[1]


def heatmaps_of(model_path: str, samples: list) -> dict:
    import keras

    import mobilefan_tf.models  # noqa: F401 - registers the model classes
    from mobilefan_tf.data import crop_face
    from mobilefan_tf.predictor import read_image

    model = keras.saving.load_model(model_path, compile=False)
    size = model.input_size
    crops, matrices = [], []
    for s in samples:
        image = s.image if s.image is not None else read_image(s.image_path)
        crop, matrix = crop_face(image, landmarks=s.landmarks, output_size=size, scale=1.25)
        crops.append(crop)
        matrices.append(matrix)
    crops = np.stack(crops).astype(np.float32)
    return {
        "size": size,
        "maps": np.asarray(model.predict(crops, batch_size=16, verbose=0)),
        "mirror_maps": np.asarray(model.predict(crops[:, :, ::-1], batch_size=16, verbose=0)),
        "matrices": np.stack(matrices),
        "truth": np.stack([np.asarray(s.landmarks, np.float32) for s in samples]),
    }


def per_image_nme(h: dict, sigma: float, radius: int | None, flip: bool) -> np.ndarray:
    """[N] NME (%) of the faces decoded with this blur, in image pixels like `evaluate_model`."""
    import keras

    from mobilefan_tf.data import apply_affine, invert_affine
    from mobilefan_tf.flip_averaging import mirror_landmarks
    from mobilefan_tf.metrics import nme_per_image

    size = h["size"]

    def decode(maps):
        return keras.ops.convert_to_numpy(decode_to_input(maps, size, blur_sigma=sigma, blur_radius=radius)[0])

    landmarks = decode(h["maps"])
    if flip:
        landmarks = (landmarks + mirror_landmarks(decode(h["mirror_maps"]), size, "300w")) / 2
    in_image = np.stack([apply_affine(invert_affine(m), lm) for m, lm in zip(h["matrices"], landmarks, strict=True)])
    return 100 * nme_per_image(in_image, h["truth"], "300w")


def two_fold_gain(table: dict, former: np.ndarray, rng: np.random.Generator, splits: int = 200) -> float:
    """Mean gain over the former decoder on held-out halves when sigma is chosen on the other half."""
    gains, n = [], len(former)
    for _ in range(splits):
        order = rng.permutation(n)
        for pick, score in ((order[: n // 2], order[n // 2 :]), (order[n // 2 :], order[: n // 2])):
            best = min(table, key=lambda key: table[key][pick].mean())
            gains.append(former[score].mean() - table[best][score].mean())
    return float(np.mean(gains))


def decode_times(sizes=(64, 32), runs: int = 200, repeats: int = 5) -> list:
    from bench_decode import noisy_heatmaps, timed, to_tflite

    rows, rng = [], np.random.default_rng(0)
    for size in sizes:
        shape = (1, size, size, 68)
        maps = noisy_heatmaps(size, 68, rng)
        graphs = {
            "former": to_tflite(lambda m: decode_heatmaps(m, blur_sigma=FORMER[0], blur_radius=FORMER[1])[0], shape),
            "default": to_tflite(lambda m: decode_heatmaps(m)[0], shape),
        }
        ms = {name: [] for name in graphs}
        for _ in range(repeats):  # interleaved, so both see the same machine load
            for name, graph in graphs.items():
                ms[name].append(timed(graph, maps, runs)[1])
        former, default = (float(np.median(ms[k])) for k in ("former", "default"))
        rows.append(
            {"heatmaps": [size, size, 68], "former_ms": former, "default_ms": default, "ratio": default / former}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared/data/300w"))
    parser.add_argument("--models", nargs="+", default=["mobilefan_tf/assets/mobilefan_300w.keras",
                                                        "mobilefan_tf/assets/mobilefan_lite_300w.keras"])  # fmt: skip
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if not os.path.isdir(args.data_dir):
        sys.exit(f"{args.data_dir}: 300W training faces not found (--data_dir)")
    samples = validation_faces(args.data_dir)
    out = {"faces": len(samples), "default": {"sigma": DEFAULT_BLUR_SIGMA}, "former": {"sigma": FORMER[0], "radius": FORMER[1]},
           "models": {}}  # fmt: skip
    rng = np.random.default_rng(0)
    print("| model | blur sigma | radius | NME one pass | flip test | gain vs former (one pass, SE) |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        h = heatmaps_of(path, samples)
        rows = {(s, r): {"sigma": s, "radius": r} for s, r in GRID}
        m = out["models"][path] = {}
        for key, flip in (("one_pass", False), ("flip", True)):
            table = {(s, r): per_image_nme(h, s, r, flip) for s, r in GRID}
            former = table[FORMER]
            for setting, nme in table.items():
                diff = former - nme
                rows[setting].update({f"nme_{key}": float(nme.mean()), f"gain_{key}": float(diff.mean()),
                                      f"gain_se_{key}": float(diff.std(ddof=1) / np.sqrt(len(diff)))})  # fmt: skip
            m[f"two_fold_gain_{key}"] = two_fold_gain(table, former, rng)
        rows = m["rows"] = list(rows.values())
        for row in rows:
            print(f"| {os.path.basename(path)} | {row['sigma']} | {row['radius']} | {row['nme_one_pass']:.3f} % | "
                  f"{row['nme_flip']:.3f} % | {row['gain_one_pass']:+.3f} ({row['gain_se_one_pass']:.3f}) |")  # fmt: skip
        print(
            f"2-fold gain (sigma picked on one half): one pass {m['two_fold_gain_one_pass']:+.3f}, flip {m['two_fold_gain_flip']:+.3f}"
        )
    out["tflite_decode_ms"] = decode_times()
    for r in out["tflite_decode_ms"]:
        print(
            f"TFLite decode {r['heatmaps']}: former {r['former_ms']:.3f} ms, default {r['default_ms']:.3f} ms, x{r['ratio']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
