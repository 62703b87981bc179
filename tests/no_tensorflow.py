"""Runs ``python tests/no_tensorflow.py MODULE ARGS...`` as if TensorFlow were not installed.

A meta-path finder makes every ``import tensorflow`` (and tf_keras,
tensorflow_model_optimization) raise ModuleNotFoundError, as on the JAX GPU
machines; then MODULE runs as ``python -m MODULE ARGS...`` from the working
directory.
"""

import os
import runpy
import sys

BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests/no_tensorflow.py)")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _Blocker())
    sys.path.insert(0, os.getcwd())
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if any(m.split(".")[0] == "tensorflow" for m in sys.modules):
            sys.exit("tensorflow was imported")
