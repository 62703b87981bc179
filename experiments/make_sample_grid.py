"""Writes a PNG grid of faces from the (augmented) input pipeline.

    python experiments/make_sample_grid.py --data_dir ../shared/data/300w --augment --out grid.png

Without --data_dir (or when it does not exist) synthetic faces are used.
"""

from __future__ import annotations

import os

from absl import app, flags

flags.DEFINE_string("data_dir", None, "300W-style folder (.jpg + .pts); synthetic faces if absent.")
flags.DEFINE_string("out", "sample_grid.png", "Output PNG.")
flags.DEFINE_integer("num", 16, "Number of faces.")
flags.DEFINE_integer("input_size", 256, "Network input size.")
flags.DEFINE_bool("augment", True, "Apply the default augmentation.")
flags.DEFINE_integer("seed", 0, "Pipeline seed.")


def main(argv: list[str]) -> None:
    del argv
    from mobilefan_tf.data import AugmentConfig, build_dataset, read_300w, sample_grid, synthetic_faces

    f = flags.FLAGS
    augment = AugmentConfig() if f.augment else None
    common = dict(input_size=f.input_size, augment=augment, batch_size=f.num, seed=f.seed, with_landmarks=True)
    if f.data_dir and os.path.isdir(f.data_dir):
        ds = build_dataset(read_300w(f.data_dir), **common)
        source = f.data_dir
    else:
        images, landmarks = synthetic_faces(f.num, f.input_size, seed=f.seed)
        ds = build_dataset(images, landmarks, **common)
        source = "synthetic faces"
    images, _, landmarks = next(iter(ds))
    sample_grid(images.numpy(), landmarks.numpy(), "300w", f.out, cols=4)
    print(f"Wrote {f.out}: {len(images)} faces from {source} (augment={f.augment})")


if __name__ == "__main__":
    app.run(main)
