"""Experiment scripts: thin absl-flag wrappers over mobilefan_tf and distillation.

Run from the repository root, e.g. ``python -m experiments.train_student --smoke``.
"""
