"""FAD / FSD losses against an independent NumPy computation of their definitions."""

import keras
import numpy as np
import pytest

from distillation import Distiller, feature_aligned_loss, feature_similarity_loss, make_adaptor
from mobilefan_tf.heatmaps import encode_heatmaps
from mobilefan_tf.models import FEATURE_NAMES, build_model

SIZE = 64  # tiny models: features at 4x4, 8x8, 16x16


def tiny_student(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model("mobilefan", input_size=SIZE, width=0.35, deconv_filters=16)


def tiny_teacher(seed=1):
    keras.utils.set_random_seed(seed)
    return build_model("hourglass", input_size=SIZE, channels=16, depth=3)


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    heatmaps = encode_heatmaps(rng.uniform(2, 13, (n, 68, 2)), SIZE // 4).numpy()
    return images, heatmaps


def np_cosine(feat, pool=None):
    """[B, H, W, C] -> [B, N, N] cosine similarities, norms floored at 1e-6."""
    feat = np.asarray(feat, np.float64)
    if pool:
        b, h, w, c = feat.shape
        feat = feat.reshape(b, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4))
    flat = feat.reshape(feat.shape[0], -1, feat.shape[-1])
    norm = np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-6)
    unit = flat / norm
    return unit @ unit.transpose(0, 2, 1)


def np_mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def test_losses_on_random_tensors():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(2, 8, 8, 5)).astype("float32")
    t = rng.normal(size=(2, 8, 8, 7)).astype("float32")
    np.testing.assert_allclose(feature_similarity_loss(s, t), np_mse(np_cosine(s), np_cosine(t)), rtol=1e-5)
    np.testing.assert_allclose(feature_similarity_loss(s, t, 2), np_mse(np_cosine(s, 2), np_cosine(t, 2)), rtol=1e-5)
    np.testing.assert_allclose(feature_aligned_loss(s, s[..., ::-1]), np_mse(s, s[..., ::-1]), rtol=1e-6)
    relative = np_mse(s, s[..., ::-1]) / np.mean(np.asarray(s, np.float64) ** 2)
    np.testing.assert_allclose(feature_aligned_loss(s, s[..., ::-1], normalize=True), relative, rtol=1e-5)
    # All-zero (dead ReLU) positions: zero similarity, no NaN.
    z = np.zeros((1, 4, 4, 3), "float32")
    assert float(feature_similarity_loss(z, z)) == 0.0


@pytest.mark.parametrize("pool,fa_normalize", [(None, False), (2, False), (None, True)])
def test_distiller_terms_match_numpy(pool, fa_normalize):
    student, teacher = tiny_student(), tiny_teacher()
    d = Distiller(student, teacher)
    d.compile(
        keras.optimizers.SGD(0.0), fa_weight=0.3, fs_weight=0.7, fs_pool_size=pool, fa_normalize=fa_normalize,
        jit_compile=False,
    )
    images, heatmaps = batch()
    terms = {k: float(v) for k, v in d.compute_losses(images, heatmaps, training=False).items() if k != "pred"}
    assert terms["kd_loss"] == 0.0  # weight 0: not computed

    s_out = {k: v.numpy() for k, v in student.feature_extractor(images, training=False).items()}
    t_out = {k: v.numpy() for k, v in teacher.feature_extractor(images, training=False).items()}
    hm = np_mse(s_out["heatmaps"], heatmaps)
    fa = sum(
        np_mse(d.adaptors[n](s_out[n], training=False).numpy(), t_out[n])
        / (np.mean(t_out[n].astype(np.float64) ** 2) if fa_normalize else 1.0)
        for n in FEATURE_NAMES
    )
    fs = sum(np_mse(np_cosine(s_out[n], pool), np_cosine(t_out[n], pool)) for n in FEATURE_NAMES)
    np.testing.assert_allclose(terms["heatmap_loss"], hm, rtol=1e-5)
    np.testing.assert_allclose(terms["fa_loss"], fa, rtol=1e-4)
    np.testing.assert_allclose(terms["fs_loss"], fs, rtol=1e-4)
    np.testing.assert_allclose(terms["loss"], hm + 0.3 * fa + 0.7 * fs, rtol=1e-4)
    # test_step reports the same numbers as metrics.
    logs = d.test_on_batch(images, heatmaps, return_dict=True)
    for name in ("loss", "heatmap_loss", "fa_loss", "fs_loss"):
        np.testing.assert_allclose(logs[name], terms[name], rtol=1e-4)
    assert "nme" in logs


def identity_adaptors(d):
    """Adaptor = identity: identity 1x1 kernel, BN with gamma 1, beta 0, mean 0, var 1 - eps."""
    for adaptor in d.adaptors.values():
        conv, bn, _ = adaptor.layers
        c = conv.kernel.shape[-1]
        conv.kernel.assign(np.eye(c, dtype="float32")[None, None])
        bn.gamma.assign(np.ones(c))
        bn.beta.assign(np.zeros(c))
        bn.moving_mean.assign(np.zeros(c))
        bn.moving_variance.assign(np.full(c, 1.0 - bn.epsilon))


def test_zero_when_features_identical_positive_otherwise():
    student = tiny_student()
    twin = tiny_student(seed=5)
    twin.set_weights(student.get_weights())
    d = Distiller(student, twin)
    d.compile(keras.optimizers.SGD(0.0), fa_weight=1.0, fs_weight=1.0, jit_compile=False)
    identity_adaptors(d)
    images, heatmaps = batch()
    terms = d.compute_losses(images, heatmaps, training=False)
    assert float(terms["fs_loss"]) == 0.0
    assert float(terms["fa_loss"]) < 1e-10

    other = Distiller(student, tiny_student(seed=7))
    other.compile(keras.optimizers.SGD(0.0), fa_weight=1.0, fs_weight=1.0, jit_compile=False)
    identity_adaptors(other)
    terms = other.compute_losses(images, heatmaps, training=False)
    assert float(terms["fs_loss"]) > 0.0
    assert float(terms["fa_loss"]) > 0.0


def test_make_adaptor_shapes():
    adaptor = make_adaptor(16, 32, "adaptor_x")
    out = adaptor(np.ones((2, 4, 4, 16), "float32"))
    assert out.shape == (2, 4, 4, 32)
    assert [type(layer).__name__ for layer in adaptor.layers] == ["Conv2D", "BatchNormalization", "ReLU"]
    assert not adaptor.layers[0].use_bias


@pytest.mark.parametrize("normalize", [False, True])
def test_fsd_gram_form_equals_similarity_matrices(monkeypatch, normalize):
    # The C x C Gram form and the N x N matrices give the same loss and the same gradient.
    import tensorflow as tf

    from distillation import losses

    rng = np.random.default_rng(4)
    s = tf.constant(rng.normal(size=(2, 8, 8, 6)).astype("float32"))
    t = tf.constant(np.maximum(rng.normal(size=(2, 8, 8, 9)), 0).astype("float32"))  # ReLU-like zeros
    results = {}
    for gram in (True, False):
        monkeypatch.setattr(losses, "_gram_form_is_cheaper", lambda n, cs, ct, gram=gram: gram)
        with tf.GradientTape() as tape:
            tape.watch(s)
            value = tf.reduce_sum(losses.feature_similarity_per_item(s, t, normalize=normalize) * [1.0, 2.0])
        results[gram] = (float(value), tape.gradient(value, s).numpy())
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-4, atol=1e-7)
    want = np_mse(np_cosine(s.numpy()[:1]), np_cosine(t.numpy()[:1])) + 2 * np_mse(np_cosine(s.numpy()[1:]), np_cosine(t.numpy()[1:]))
    if not normalize:
        np.testing.assert_allclose(results[True][0], want, rtol=1e-5)


def test_fsd_many_channels_builds_the_matrices():
    rng = np.random.default_rng(5)
    s = rng.normal(size=(2, 4, 4, 40)).astype("float32")  # N = 16 positions, 40 channels: matrix form
    t = rng.normal(size=(2, 4, 4, 24)).astype("float32")
    np.testing.assert_allclose(feature_similarity_loss(s, t), np_mse(np_cosine(s), np_cosine(t)), rtol=1e-5)
