"""Training AlignIQL agents on Minari datasets (repository only; the wheel ships just ``aligniql``).

Run ``python training/train.py --help``. The pieces: ``datasets`` (Minari -> tensors), ``losses``,
``trainer`` (one gradient step), ``checkpoint`` (state for ``--resume``), ``presets``, ``push`` (Hub).
"""
