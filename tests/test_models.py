"""Model presets: shapes, features, config and .keras round trips, bad input."""

import keras
import numpy as np
import pytest

from mobilefan_tf.models import PRESETS, MobileFAN, build_model, final_heatmaps

# Small inputs keep the big teachers quick; shapes scale with input_size.
FAST_SIZE = {"mobilefan": 256, "mobilefan_lite": 128, "hourglass": 128, "hourglass_lite": 128, "resnet50_deconv": 64}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("k", [68, 98, 29])
def test_shapes_and_features(preset, k):
    size = FAST_SIZE[preset]
    model = build_model(preset, num_keypoints=k, input_size=size)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    out = model(x)
    heat = final_heatmaps(out)
    assert heat.shape == (2, size // 4, size // 4, k)
    assert heat.dtype == "float32"
    feats = model.feature_extractor(x)
    for i, name in enumerate(("feat1", "feat2", "feat3")):
        side = size // 16 * 2**i
        assert feats[name].shape[:3] == (2, side, side)
        assert float(keras.ops.min(feats[name])) >= 0.0  # post-ReLU
    np.testing.assert_allclose(feats["heatmaps"], heat, atol=1e-5)


def test_paper_preset_matches_the_authors_layout():
    model = build_model("mobilefan")
    assert model.count_params() == 2_148_484  # ~2.1 M, as the paper
    assert model.get_layer("block_16_project_BN").output.shape[-1] == 320
    assert model.feature_channels == {"feat1": 128, "feat2": 128, "feat3": 128}
    deconv = model.get_layer("feat1_deconv")
    assert deconv.kernel_size == (2, 2) and deconv.strides == (2, 2) and not deconv.use_bias
    lite = build_model("mobilefan_lite")
    assert lite.count_params() <= 575_220
    # No 1280-channel head conv or classifier.
    assert all(layer.name not in ("Conv_1", "predictions") for layer in model.layers)


def test_bn_momentum_is_lowered_everywhere():
    model = build_model("mobilefan_lite", bn_momentum=0.9)
    bns = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    assert bns and all(bn.momentum == 0.9 for bn in bns)


@pytest.mark.parametrize("preset", ["mobilefan", "mobilefan_lite", "hourglass_lite"])
def test_config_and_keras_round_trip(preset, tmp_path):
    model = build_model(preset, num_keypoints=29)
    clone = model.__class__.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    size = model.input_size
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(final_heatmaps(loaded(x))),
        keras.ops.convert_to_numpy(final_heatmaps(model(x))),
    )


def test_local_encoder_weights(tmp_path):
    ref = keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=0.5, include_top=False, weights=None)
    path = str(tmp_path / "mnv2.weights.h5")
    ref.save_weights(path)
    model = build_model("mobilefan_lite", encoder_weights=path)
    np.testing.assert_array_equal(
        model.get_layer("block_5_expand").get_weights()[0], ref.get_layer("block_5_expand").get_weights()[0]
    )


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nope.h5"):
        build_model("mobilefan_lite", encoder_weights=str(tmp_path / "nope.h5"))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="Cannot load MobileNetV2 .*junk.h5"):
        build_model("mobilefan_lite", encoder_weights=str(junk))
    with pytest.raises(ValueError, match="does not match spec '300w'"):
        build_model("mobilefan_lite", num_keypoints=98, spec="300w")
    with pytest.raises(ValueError, match="multiple of 32"):
        MobileFAN(input_size=100)
    with pytest.raises(ValueError, match="Unknown model preset"):
        build_model("mobilefan_xl")
    model = build_model("mobilefan_lite")
    with pytest.raises(ValueError, match=r"expects images of shape \[batch, 128, 128, 3\].*\[1, 128, 128, 4\]"):
        model.predict_landmarks(np.zeros((1, 128, 128, 4)))
    with pytest.raises(ValueError, match=r"got \[2, 256, 256, 3\]"):
        model.check_images(np.zeros((2, 256, 256, 3)))
