"""Weight averaging: exact means of weight files, BatchNorm statistics re-estimated by hand."""

import keras
import numpy as np
import pytest

from mobilefan_tf.averaging import average_weight_files, batchnorm_layers, recalibrate_batchnorm


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(inputs)
    x = keras.layers.Dense(3, name="dense")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    return keras.Model(inputs, x)


def test_average_weight_files_is_the_exact_mean(tmp_path):
    model = _mlp()
    paths = []
    for i in range(3):
        ws = [np.full(w.shape, float(i * i + k), np.float32) for k, w in enumerate(model.get_weights())]
        model.set_weights(ws)
        paths.append(str(tmp_path / f"epoch_{i}.weights.h5"))
        model.save_weights(paths[-1])
    average_weight_files(model, paths)
    for k, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, np.full(w.shape, (0 + 1 + 4) / 3 + k), rtol=1e-6)


def test_epoch_weights_keep_the_inner_models_weights_each_epoch(tmp_path):
    """A Distiller keeps its student's weights: the files must load into a bare student, one per epoch."""
    from mobilefan_tf.training import EpochWeights

    inner = _mlp()
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))  # more weights than `inner`
    outer.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(inner.get_weights()))
    outer.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[EpochWeights(str(tmp_path / "epochs"), inner), record])
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch_001.weights.h5", "epoch_002.weights.h5"]
    student = _mlp(seed=1)
    for epoch, weights in enumerate(seen, 1):
        student.load_weights(str(tmp_path / "epochs" / f"epoch_{epoch:03d}.weights.h5"))
        for got, want in zip(student.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)
    assert not np.allclose(seen[0][2], seen[1][2])  # the dense kernel moved: two different epochs were kept


def test_average_weight_files_errors_name_the_file(tmp_path):
    model = _mlp()
    with pytest.raises(ValueError, match="no weight files"):
        average_weight_files(model, [])
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(ValueError, match="other.weights.h5"):
        average_weight_files(model, [path])


def test_recalibrate_batchnorm_gives_the_average_batch_statistics():
    model = _mlp()
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (8, 4)).astype(np.float32) for i in range(3)]
    dense_w, dense_b = model.get_layer("dense").get_weights()
    assert recalibrate_batchnorm(model, iter(batches)) == 3
    bn1, bn2 = model.get_layer("bn1"), model.get_layer("bn2")
    eps = bn1.epsilon
    # By hand: layer 1 sees the raw batches; layer 2 sees Dense of batch-normalised ones (gamma 1, beta 0).
    np.testing.assert_allclose(bn1.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-5)
    hidden = [((b - b.mean(0)) / np.sqrt(b.var(0) + eps)) @ dense_w + dense_b for b in batches]
    np.testing.assert_allclose(bn2.moving_mean.numpy(), np.mean([h.mean(0) for h in hidden], 0), atol=1e-5)
    np.testing.assert_allclose(bn2.moving_variance.numpy(), np.mean([h.var(0) for h in hidden], 0), rtol=1e-4)
    assert [layer.momentum for layer in batchnorm_layers(model)] == [0.9, 0.9]  # restored
    np.testing.assert_array_equal(model.get_layer("dense").get_weights()[0], dense_w)  # nothing else trained


def test_recalibrate_batchnorm_takes_tuples_and_stops_at_max_batches():
    model = _mlp()
    batches = [(np.full((2, 4), float(i), np.float32) + [[0], [2]], None) for i in range(5)]
    assert recalibrate_batchnorm(model, batches, max_batches=2) == 2
    # Rows i and i + 2: batch means 1 and 2 over the first two batches.
    np.testing.assert_allclose(model.get_layer("bn1").moving_mean.numpy(), np.full(4, 1.5), rtol=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(model, [])
