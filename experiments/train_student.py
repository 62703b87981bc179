"""Trains a MobileFAN student on 300W heatmaps alone (the no-distillation baseline).

    python -m experiments.train_student --preset mobilefan --epochs 80
    python -m experiments.train_student --smoke   # synthetic faces, ~1 minute

Writes ``--workdir`` (default runs/train_student): log.csv, tb/, best.keras
(best validation NME), last.keras, backup/ (a killed run resumes when started
again with the same flags), train_list.txt and val_list.txt. See
`experiments.script_setup` for the shared flags and ``--strategy``.
"""

from absl import app

from experiments import script_setup

script_setup.define_flags("train_student", preset="mobilefan")
script_setup.define_training_flags()


def main(argv):
    del argv
    script_setup.run_supervised()


if __name__ == "__main__":
    app.run(main)
