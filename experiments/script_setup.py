"""Flags and helpers shared by the experiment scripts.

Every script takes ``--preset``, ``--workdir`` (default ``runs/<script>``),
``--dataset`` / ``--data_dir`` / ``--index_base`` (which faces, see below),
``--epochs``, ``--batch_size``, ``--strategy`` and ``--smoke`` (tiny models
and, for 300W, synthetic faces: the whole script runs in about a minute, for
tests and a first try).

Dataset (``--dataset``): ``300w`` (default), ``wflw``, ``cofw``, a custom
spec file (JSON/TOML, `mobilefan_tf.specs.load_spec_file`; ``--data_dir`` is
then a folder of images + ``.pts``) or a COCO keypoints JSON (``--data_dir``,
if given, is its images root). The spec decides K, the flip permutation and
the NME normaliser. ``--index_base`` defaults to what the folder says (a
``mobilefan_dataset.json`` marker or its README: ``shared/data/300w`` is
0-based), else the dataset's convention (published 300W ``.pts`` are 1-based).
``script_setup.SPEC`` is that layout as a model config stores it (``"300w"``, or a
custom spec's dict); `dataset_spec` returns the `LandmarkSpec`.

Distribution (``--strategy``):
  * ``default``: one device.
  * ``mirrored``: `tf.distribute.MirroredStrategy` over all local GPUs (or,
    without GPUs, every logical CPU device: one unless the process split
    it); the model is built and compiled inside ``strategy.scope()``;
    ``--batch_size`` is the global batch.
  * ``multi_worker`` (old spelling ``multiworker`` still accepted):
    `tf.distribute.MultiWorkerMirroredStrategy`, synchronous data-parallel
    training over several processes / machines (all-reduce of the gradients
    every step). Start the *same command* on every worker with ``TF_CONFIG``
    naming all workers and this one's index, e.g. on two machines::

        # on host0 (worker 0, the chief):
        TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                    "task": {"type": "worker", "index": 0}}' \
            python -m experiments.train_student --strategy multi_worker --workdir runs/mw0
        # on host1: the same with "index": 1 and --workdir runs/mw1

    The port must be open between the machines; the run starts once every
    worker has joined. ``--batch_size`` is the global batch (each worker
    trains on its share of every batch; the input pipeline is built on each
    worker and sharded by tf.data). Give each worker its own ``--workdir``
    (or use a shared file system with one directory per worker): every
    worker keeps its own checkpoints and backup, and a killed run resumes
    when all workers are started again. Use the chief's (worker 0's)
    checkpoints: the trained weights are the same on every worker, but
    BatchNorm running statistics are per replica, each worker's from its
    own share of the batches. On one machine (a
    test), list ``127.0.0.1:PORT`` twice with two ports.

Keras backends: the scripts run under any ``KERAS_BACKEND`` through
``model.fit``. Under TensorFlow the input is the tf.data pipeline; under
another backend (JAX) it is `mobilefan_tf.data.feeder.FaceFeeder`, the same
augmentation drawn by NumPy and applied in keras.ops, which needs no
TensorFlow (``--input_pipeline`` picks one explicitly). ``--data_dir`` may
also be a packed ``.npz`` (``python -m experiments.pack_faces``) for a
machine without the data; ``--time_budget`` stops training between epochs.
"""

from __future__ import annotations

import json
import math
import os

from absl import app, flags

# Relative to the working directory (the repository root, where the scripts run), not to this
# file's location; $MOBILEFAN_300W_DIR (as in the tests) or --data_dir point elsewhere.
DEFAULT_DATA_DIR = os.environ.get("MOBILEFAN_300W_DIR") or os.path.join("..", "shared", "data", "300w")
# --strategy values -> the strategy they name (multiworker: the old spelling).
STRATEGIES = {"default": "default", "mirrored": "mirrored", "multi_worker": "multi_worker", "multiworker": "multi_worker"}

# --smoke: tiny versions of each architecture (64 px in, 16x16 heatmaps).
SMOKE_OVERRIDES = {
    "MobileFAN": {"input_size": 64, "width": 0.35, "deconv_filters": 16},
    "HourglassTeacher": {"input_size": 64, "channels": 16, "depth": 3},
    "ResNetDeconvTeacher": {"input_size": 64, "deconv_filters": 16},
}
SMOKE_FACES = 60  # 54 train + 6 validation

FLAGS = flags.FLAGS


def define_flags(script: str, preset: str) -> None:
    """Defines the flags every script shares."""
    flags.DEFINE_string("preset", preset, "Model preset (see mobilefan_tf.models.PRESETS).")
    flags.DEFINE_string("workdir", os.path.join("runs", script), "Logs, checkpoints and outputs go here.")
    flags.DEFINE_string("dataset", "300w", "300w, wflw, cofw, a landmark spec file (.json/.toml) or a COCO "
                        "keypoints JSON: decides reading, flip pairs, heatmap count and NME normaliser.")
    flags.DEFINE_string("data_dir", DEFAULT_DATA_DIR, "Dataset folder (300W / spec file: images + .pts; WFLW: "
                        "annotations + WFLW_images; COFW: .mat files; COCO: images root, default beside the JSON).")
    flags.DEFINE_integer("index_base", None, "Subtract this from .pts coordinates (0 or 1). Default: what the folder "
                         "says (mobilefan_dataset.json or README; shared/data/300w is 0-based), else the dataset's "
                         "convention (published 300W: 1).", lower_bound=0, upper_bound=1)
    flags.DEFINE_integer("epochs", None, "Epochs (default: the TrainConfig default; 2 with --smoke).")
    flags.DEFINE_integer("batch_size", None, "Global batch size (default 16; 8 with --smoke).")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy (multiworker: old "
                      "spelling of multi_worker).")
    flags.DEFINE_enum("input_pipeline", "auto", ["auto", "tf_data", "feeder"], "Training input: tf.data (needs "
                      "TensorFlow), the NumPy/PyDataset feeder (any backend), or auto: tf.data on the TensorFlow "
                      "backend, else the feeder.")
    flags.DEFINE_bool("smoke", False, "Synthetic faces and a tiny model: an end-to-end run in about a minute.")


def define_training_flags() -> None:
    """Flags of the scripts that train."""
    flags.DEFINE_float("learning_rate", None, "Peak learning rate (default: TrainConfig's).")
    flags.DEFINE_float("warmup_epochs", None, "Linear warm-up epochs (default: TrainConfig's; 0 with --smoke).")
    flags.DEFINE_enum("schedule", None, ["cosine", "step", "constant"], "LR decay (default: TrainConfig's).")
    flags.DEFINE_bool("augment", True, "Random geometric + photometric augmentation of training faces.")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling and augmentation.")
    flags.DEFINE_string("init_weights", None, "Start from these weights (.keras or .weights.h5 of the same preset), "
                        "e.g. a GPU run (KERAS_BACKEND=jax), to fine-tune on.")
    flags.DEFINE_float("time_budget", 0.0, "Stop training (between epochs) when the next epoch would end after "
                       "this many seconds from the start; 0: no limit.")
    flags.DEFINE_bool("keep_epoch_weights", False, "Keep every epoch's (student) weights in WORKDIR/epochs/ (about "
                      "9 MB each for the paper preset), for experiments.average_weights.")


class _NoStrategy:
    """One device, any backend: a ``scope()`` that does nothing."""

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def get_strategy(name: str):
    """The `tf.distribute` strategy named by ``--strategy`` (see the module docstring)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        if name != "default":
            raise app.UsageError(f"--strategy {name} needs KERAS_BACKEND=tensorflow (got {keras.backend.backend()})")
        return _NoStrategy()
    import tensorflow as tf

    name = STRATEGIES[name]
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise app.UsageError("--strategy multi_worker needs TF_CONFIG naming the workers and this one's index "
                                 "(see experiments/script_setup.py)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def dataset_spec():
    """The `LandmarkSpec` of ``--dataset`` (a UsageError line when the spec file is bad)."""
    from mobilefan_tf.data.datasets import dataset_spec as resolve

    try:
        return resolve(FLAGS.dataset)
    except ValueError as err:
        raise app.UsageError(f"--dataset {err}") from None


def __getattr__(name):
    # script_setup.SPEC: the layout the parsed flags name, as a model config stores it (a built-in
    # name such as "300w", a custom spec's dict): build_model, build_dataset, evaluate_model take it.
    if name == "SPEC":
        from mobilefan_tf.specs import spec_config

        return spec_config(dataset_spec())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(preset: str, smoke: bool = False, **overrides):
    """`build_model(preset)` with the ``--dataset`` layout (K, spec), tiny under --smoke."""
    from mobilefan_tf.models import PRESETS, build_model
    from mobilefan_tf.specs import spec_config

    if smoke:
        if preset not in PRESETS:
            raise ValueError(f"Unknown model preset {preset!r} (known: {sorted(PRESETS)})")
        overrides = {**SMOKE_OVERRIDES[PRESETS[preset].model_class], **overrides}
    spec = dataset_spec()
    return build_model(preset, num_keypoints=spec.num_points, spec=spec_config(spec), **overrides)


def train_config():
    """A `TrainConfig` from the flags (defaults from TrainConfig, smaller under --smoke)."""
    from mobilefan_tf.training import TrainConfig

    cfg = {"seed": FLAGS.seed}
    if FLAGS.smoke:
        cfg.update(epochs=2, batch_size=8, warmup_epochs=0.0)
    for name in ("epochs", "batch_size", "learning_rate", "warmup_epochs", "schedule"):
        if getattr(FLAGS, name) is not None:
            cfg[name] = getattr(FLAGS, name)
    return TrainConfig(**cfg)


def smoke_samples(num: int = SMOKE_FACES, seed: int = 0) -> list:
    """Synthetic 68-point faces as `FaceSample`s (images in memory)."""
    from mobilefan_tf.data import FaceSample, synthetic_faces

    images, landmarks = synthetic_faces(num, image_size=96, seed=seed)
    return [FaceSample(f"synthetic/{i:05d}", None, im, lm) for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))]


def index_base(data_dir: str) -> int | None:
    """``--index_base``, else None (the folder decides), but 0 for the shared 300W folder in any case.

    The shared folder's README says 0-based; should that README go missing,
    the project's own data must still not shift by a pixel.
    """
    from mobilefan_tf.data.readers import folder_index_base

    if FLAGS.index_base is not None:
        return FLAGS.index_base
    if os.path.realpath(data_dir) == os.path.realpath(DEFAULT_DATA_DIR):
        base, _ = folder_index_base(data_dir, default=0)
        return base
    return None


def load_samples(split: str = "train") -> list:
    """Faces of a ``--dataset`` split, or synthetic 68-point ones under --smoke with 300W.

    Splits: 300W ``train``, ``common``, ``challenging``, ``full``, ``all``;
    WFLW / COFW ``train`` (``common``/``challenging``/``full`` read ``test``);
    spec-file folders and COCO files have one split (all their faces).
    """
    from mobilefan_tf.data.datasets import is_coco_file, load_dataset

    spec = dataset_spec()
    if FLAGS.smoke and spec.name == "300w" and spec.is_builtin:
        return smoke_samples(seed=0 if split == "train" else 1)
    if FLAGS.data_dir.endswith(".npz"):  # packed faces (experiments.pack_faces), e.g. on a GPU machine
        from mobilefan_tf.data import split_300w
        from mobilefan_tf.data.packed import read_packed

        try:
            packed = read_packed(FLAGS.data_dir)
        except (OSError, ValueError) as err:
            raise app.UsageError(str(err).splitlines()[0]) from None
        samples = split_300w(packed, split)
        if not samples:
            raise app.UsageError(f"{FLAGS.data_dir}: no faces in the 300W {split!r} split")
        return samples
    data_dir = None if is_coco_file(FLAGS.dataset) and not FLAGS["data_dir"].present else FLAGS.data_dir
    if data_dir is not None:
        data_dir = os.path.abspath(data_dir)
        if not os.path.exists(data_dir):
            raise app.UsageError(f"{data_dir}: dataset folder not found (pass --data_dir, or --smoke)")
    if spec.name in ("wflw", "cofw") and split != "train":
        split = "test"
    try:
        _, samples = load_dataset(FLAGS.dataset, data_dir, split, index_base(data_dir) if data_dir else None)
    except ValueError as err:  # one line naming the file; nothing is trained on half-read data
        raise app.UsageError(" ".join(str(err).split())) from None
    return samples


def train_val_samples() -> tuple[list, list]:
    """The training faces split into (train, validation): every 10th face by sorted name is validation."""
    from mobilefan_tf.data import split_train_val

    return split_train_val(load_samples("train"), every=10)


def training_data(input_size: int, config, workdir: str, teacher_input_size: int | None = None,
                  unlabeled: list | None = None):
    """Train / validation datasets; validation is every 10th face by sorted name.

    The two name lists are written to ``workdir/train_list.txt`` and
    ``workdir/val_list.txt`` (validation faces are never trained on), and
    the run's flags to ``workdir/flags.json``.

    Args:
        input_size: The (student) model's input size.
        config: The `TrainConfig`.
        workdir: The run's folder.
        teacher_input_size: For distillation: batches carry the same face at
            the teacher's size too, and the label weight (see `build_dataset`).
        unlabeled: Extra training faces without landmarks (distillation only).

    Returns:
        (train_ds repeating forever, val_ds, steps_per_epoch); an epoch covers
        the labelled and unlabelled training faces once.
    """
    from mobilefan_tf.data import AugmentConfig, write_split_list

    train, val = train_val_samples()
    if not train or not val:
        raise ValueError(f"Too few faces to split: {len(train)} train, {len(val)} validation (need >= 10)")
    os.makedirs(workdir, exist_ok=True)
    ours = {f.name: f.value for mod, fl in FLAGS.flags_by_module_dict().items() if "experiments" in mod for f in fl}
    with open(os.path.join(workdir, "flags.json"), "a") as f:  # one line per run (a resumed run appends)
        f.write(json.dumps(ours) + "\n")
    write_split_list(os.path.join(workdir, "train_list.txt"), train)
    write_split_list(os.path.join(workdir, "val_list.txt"), val)
    augment = AugmentConfig() if FLAGS.augment else AugmentConfig.none()
    common = {"spec": dataset_spec(), "input_size": input_size, "sigma": config.sigma, "batch_size": config.batch_size}
    if teacher_input_size is not None:
        common.update(teacher_input_size=teacher_input_size, with_label_weight=True)
    train = list(train) + list(unlabeled or [])
    if use_feeder():
        from mobilefan_tf.data.feeder import FaceFeeder

        # Whole batches only: one compiled shape for the jit-compiled step (the order changes every epoch).
        train_ds = FaceFeeder(train, augment=augment, shuffle=True, seed=config.seed, drop_remainder=True,
                              allow_unlabeled=bool(unlabeled), **common)
        return train_ds, FaceFeeder(val, shuffle=False, **common), len(train_ds)
    from mobilefan_tf.data import build_dataset  # tf.data: TensorFlow
    from mobilefan_tf.training import resumed_epoch

    steps = math.ceil(len(train) / config.batch_size)
    # A resumed run continues the shuffle / augmentation stream where the killed one stopped.
    start = resumed_epoch(workdir) * steps * config.batch_size
    train_ds = build_dataset(train, augment=augment, shuffle=True, seed=config.seed, repeat=True,
                             allow_unlabeled=bool(unlabeled), start=start, **common)
    val_ds = build_dataset(val, shuffle=False, cache=True, **common)
    return train_ds, val_ds, steps


def use_feeder() -> bool:
    """Whether ``--input_pipeline`` (auto: any backend but TensorFlow) selects the NumPy feeder."""
    import keras

    if FLAGS.input_pipeline == "auto":
        return keras.backend.backend() != "tensorflow"
    if FLAGS.input_pipeline == "tf_data" and keras.backend.backend() != "tensorflow":
        raise app.UsageError(f"--input_pipeline tf_data needs KERAS_BACKEND=tensorflow (got {keras.backend.backend()})")
    return FLAGS.input_pipeline == "feeder"


def time_budget_callback(seconds: float):
    """A callback stopping `model.fit` between epochs when the next one would overrun `seconds` (0: none)."""
    import time

    import keras

    class TimeBudget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = time.time()
            self.last = self.start

        def on_epoch_end(self, epoch, logs=None):
            now = time.time()
            per_epoch, self.last = now - self.last, now
            if seconds > 0 and now - self.start + per_epoch > seconds:
                print(f"time budget: stopping after epoch {epoch + 1} ({now - self.start:.0f} s of {seconds:g})")
                self.model.stop_training = True

    return [TimeBudget()] if seconds > 0 else []


def print_history(history) -> None:
    """One line per epoch run now: the losses and NME Keras logged."""
    for epoch, values in zip(history.epoch, zip(*history.history.values(), strict=True), strict=True):
        row = " ".join(f"{k}={v:.4g}" for k, v in zip(history.history, values, strict=True))
        print(f"epoch {epoch + 1}: {row}")


def load_init_weights(model, path: str) -> None:
    """Loads a .weights.h5, or the weights of a saved .keras model, into `model` (same architecture)."""
    import keras

    # UsageError: absl prints the one line and exits 1, without a traceback.
    if not os.path.isfile(path):
        raise app.UsageError(f"--init_weights file not found: {path}")
    try:
        if path.endswith(".weights.h5"):
            model.load_weights(path)
        else:
            model.set_weights(keras.saving.load_model(path, compile=False).get_weights())
    except (ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise app.UsageError(f"{path}: cannot load as --init_weights for preset {FLAGS.preset!r}: {first}") from None


def run_supervised() -> None:
    """Trains ``--preset`` on heatmaps alone (no teacher): `training.fit` with its standard callbacks."""
    import keras

    from mobilefan_tf.training import compile_heatmap_model, fit

    config = train_config()
    strategy = get_strategy(FLAGS.strategy)
    keras.utils.set_random_seed(FLAGS.seed)  # the same initial weights on every worker / in every run
    with strategy.scope():
        model = build(FLAGS.preset, FLAGS.smoke)
        if FLAGS.init_weights:
            load_init_weights(model, FLAGS.init_weights)
    train_ds, val_ds, steps = training_data(model.input_size, config, FLAGS.workdir)
    with strategy.scope():
        compile_heatmap_model(model, config, dataset_spec(), steps)
    history = fit(model, train_ds, val_ds, config, FLAGS.workdir, spec=dataset_spec(), steps_per_epoch=steps,
                  keep_epoch_weights=FLAGS.keep_epoch_weights, extra_callbacks=time_budget_callback(FLAGS.time_budget))
    print_history(history)
    print(f"best checkpoint: {os.path.join(FLAGS.workdir, 'best.keras')}")
