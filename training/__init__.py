"""Training AlignIQL agents on Minari datasets (installed with the package; needs the ``[train]`` extra).

Run ``aligniql-train --help`` (or ``python training/train.py --help``); docs/training.md describes every flag.
From Python: ``training.train.train(training.config.TrainConfig.create(dataset=..., steps=...))``. The pieces:
``config`` (TrainConfig, the CLI), ``datasets`` (Minari -> tensors), ``losses``, ``trainer`` (one gradient
step), ``checkpoint`` (state for ``--resume``), ``presets``, ``push`` (Hub). ``import aligniql`` never imports it.
"""
