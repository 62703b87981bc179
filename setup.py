"""Installs mobilefan_tf (library), distillation and experiments, and the `mobilefan` CLI."""

from setuptools import find_packages, setup

setup(
    name="mobilefan-tf",
    version="0.1.0",
    description="MobileFAN facial landmark detection in Keras 3 / TensorFlow: train, distil, export.",
    python_requires=">=3.10",
    packages=find_packages(include=["mobilefan_tf", "mobilefan_tf.*", "distillation", "distillation.*", "experiments"]),
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
        # Default face detector (dlib's HOG; no model file). OpenCV 5 ships no Haar cascades.
        "dlib-bin",
        "scikit-image",  # the demo photo
    ],
    extras_require={
        # jax + optax: the GPU trainer (experiments/jax_train.py); its tests run on the CPU.
        "test": ["pytest", "ruff", "jax>=0.4.30", "optax"],
        "jax": ["jax>=0.4.30", "optax"],
        # dlib's 68-point shape predictor file, for the comparison rows of `mobilefan benchmark`.
        "bench": ["face_recognition_models"],
        "qat": ["tf_keras>=2.21,<2.22", "tensorflow-model-optimization"],
    },
    entry_points={"console_scripts": ["mobilefan=mobilefan_tf.cli:main"]},
)
