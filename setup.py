"""Installs mobilefan_tf (library, with distillation/ as mobilefan_tf.distillation) and the `mobilefan` CLI.

Only the project's namespace goes into site-packages: the repository's
distillation/ folder is installed as the subpackage ``mobilefan_tf.distillation``
(it imports its own modules relatively, so both names work), and the absl
scripts in experiments/ are not installed; they run from a checkout
(``python -m experiments.train_student``).
"""

from setuptools import find_packages, setup

setup(
    name="mobilefan-tf",
    version="0.1.0",
    description="MobileFAN facial landmark detection in Keras 3 / TensorFlow: train, distil, export.",
    python_requires=">=3.10",
    packages=find_packages(include=["mobilefan_tf", "mobilefan_tf.*"]) + ["mobilefan_tf.distillation"],
    package_dir={"mobilefan_tf.distillation": "distillation"},
    package_data={"mobilefan_tf": ["assets/*", "assets/**/*"]},
    include_package_data=True,
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22",
        "keras>=3.10",
        "numpy",
        "matplotlib",
        "absl-py",
        "tensorflow-datasets",
        "pillow",
        "scipy",
        "h5py",
        "opencv-python-headless",
        "ai-edge-litert",
        "tensorboard",
        # dlib's HOG face detector (`--detector dlib`, the old default; no model file).
        "dlib-bin",
        "scikit-image",  # the demo photo
    ],
    extras_require={
        # jax: the scripts under KERAS_BACKEND=jax (tests/test_backends.py, tests/test_distill_backends.py).
        "test": ["pytest", "pytest-xdist>=3.8", "ruff", "jax>=0.4.30"],
        "jax": ["jax>=0.4.30"],
        # dlib's 68-point shape predictor file, for the comparison rows of `mobilefan benchmark`.
        "bench": ["face_recognition_models"],
        "qat": ["tf_keras>=2.21,<2.22", "tensorflow-model-optimization"],
    },
    entry_points={"console_scripts": ["mobilefan=mobilefan_tf.cli:main"]},
)
