"""MobileFAN-TF: lightweight facial landmark detection in Keras 3 / TensorFlow."""

import os

# Keep TensorFlow's C++ start-up chatter out of user-facing output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
