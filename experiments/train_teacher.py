"""Trains a teacher (hourglass or ResNet-50 deconv) on 300W heatmaps, for distillation.

    python -m experiments.train_teacher --preset hourglass --epochs 80
    python -m experiments.train_teacher --smoke   # synthetic faces, ~1 minute

Writes ``--workdir`` (default runs/train_teacher): log.csv, tb/, best.keras
(best validation NME), last.keras, backup/ (a killed run resumes when started
again with the same flags), train_list.txt and val_list.txt. See
`experiments.script_setup` for the shared flags and ``--strategy``.
"""

from absl import app

from experiments import script_setup

script_setup.define_flags("train_teacher", preset="hourglass")
script_setup.define_training_flags()


def main(argv):
    del argv
    script_setup.run_supervised()


if __name__ == "__main__":
    app.run(main)
