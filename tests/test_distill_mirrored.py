"""Distillation under MirroredStrategy on 2 logical CPUs matches a single-device run.

Logical devices must be configured before TensorFlow initialises, so the
comparison runs in a fresh subprocess. BatchNorm layers are frozen (inference
mode) in both runs: with per-replica batch statistics the two runs compute
genuinely different, equally valid, normalisations. (Synchronized BN matches
on the first step, but TF's gradient through the cross-replica mean differs
by ~1% in early layers, so it is not used here.) What is checked is the
distillation step itself: per-replica losses, gradient scaling by the number
of replicas, metric aggregation.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from distillation import Distiller
    from mobilefan_tf.heatmaps import encode_heatmaps
    from mobilefan_tf.models import build_model

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    heatmaps = encode_heatmaps(rng.uniform(2, 13, (8, 68, 2)), 16).numpy()
    keras.utils.set_random_seed(0)
    ref_s = build_model("mobilefan", input_size=64, width=0.35, deconv_filters=16).get_weights()
    ref_t = build_model("hourglass", input_size=64, channels=16, depth=3).get_weights()
    ref_a = None

    def run(strategy):
        global ref_a
        with strategy.scope():
            s = build_model("mobilefan", input_size=64, width=0.35, deconv_filters=16)
            t = build_model("hourglass", input_size=64, channels=16, depth=3)
            s.set_weights(ref_s)
            t.set_weights(ref_t)
            d = Distiller(s, t)
            for layer in d._flatten_layers():
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            if ref_a is None:
                ref_a = [a.get_weights() for a in d.adaptors.values()]
            for a, w in zip(d.adaptors.values(), ref_a):
                a.set_weights(w)
            d.compile(keras.optimizers.SGD(0.05), fa_weight=0.01, fs_weight=1.0, jit_compile=False)
        ds = tf.data.Dataset.from_tensors((images, heatmaps)).repeat(3)
        hist = d.fit(ds, epochs=3, steps_per_epoch=1, verbose=0).history
        hist["val"] = d.evaluate(images, heatmaps, batch_size=8, return_dict=True, verbose=0)
        hist["replicas"] = strategy.num_replicas_in_sync
        return hist

    single = run(tf.distribute.get_strategy())
    mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("RESULT" + json.dumps({"single": single, "mirrored": mirrored}))
    """
)


@pytest.mark.slow
def test_mirrored_matches_single_device():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT"):])
    single, mirrored = result["single"], result["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    for name in ("loss", "heatmap_loss", "fa_loss", "fs_loss"):
        for a, b in zip(single[name], mirrored[name], strict=True):  # per step
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (name, single[name], mirrored[name])
        assert abs(single["val"][name] - mirrored["val"][name]) <= 1e-4 * max(1.0, abs(single["val"][name]))
    # The steps did train (later losses differ from the first).
    assert single["loss"][0] != single["loss"][-1]
