"""Packs a face folder into one ``.npz`` for a machine without the data (e.g. a lent JAX GPU machine).

    python -m experiments.pack_faces --data_dir ../shared/data/300w --out .devdata/300w.npz

Every script that takes ``--data_dir`` also takes the packed file (the
split and the validation hold-out are computed from the face names, as for
the folder). See `mobilefan_tf.data.packed`.
"""

import json

from absl import app, flags

flags.DEFINE_string("data_dir", "../shared/data/300w", "300W-style folder (images + 0-based .pts).")
flags.DEFINE_string("out", None, "Destination .npz.", required=True)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from mobilefan_tf.data.packed import pack_faces

    try:
        print(json.dumps(pack_faces(FLAGS.data_dir, FLAGS.out)))
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err).strip().splitlines()[0]) from None


if __name__ == "__main__":
    app.run(main)
