"""End to end: distil a tiny student on synthetic faces, then save and reload it."""

import keras
import numpy as np
import pytest

from distillation import Distiller
from mobilefan_tf.data import build_dataset, synthetic_faces
from mobilefan_tf.models import build_model


@pytest.mark.slow
def test_distilled_student_improves_and_reloads(tmp_path):
    images, landmarks = synthetic_faces(96, image_size=64, seed=0)
    train = build_dataset(images[:80], landmarks[:80], input_size=64, batch_size=8, seed=0, cache=True)
    val = build_dataset(images[80:], landmarks[80:], input_size=64, batch_size=16, shuffle=False, cache=True)
    keras.utils.set_random_seed(0)
    student = build_model("mobilefan", input_size=64, width=0.35, deconv_filters=16)
    teacher = build_model("hourglass", input_size=64, channels=16, depth=3)
    d = Distiller(student, teacher)
    d.compile(keras.optimizers.Adam(3e-3), fa_weight=0.01, fs_weight=0.01, kd_weight=1.0, fs_pool_size=2,
              jit_compile=False)
    start = d.evaluate(val, return_dict=True, verbose=0)["nme"]
    history = d.fit(train, validation_data=val, epochs=5, verbose=0).history
    assert {"val_loss", "val_heatmap_loss", "val_fa_loss", "val_fs_loss", "val_kd_loss", "val_nme"} <= set(history)
    assert history["val_nme"][-1] < start

    path = str(tmp_path / "student.keras")
    d.student.save(path)
    loaded = keras.saving.load_model(path)
    x = next(iter(val))[0]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), d.student.predict(x, verbose=0))
