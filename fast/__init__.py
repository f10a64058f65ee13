"""The fast path: the same pretraining function computed for speed on CUDA (docs/fast-path.md).

:class:`fast.settings.SpeedSettings` resolves ``--speed`` and its switches; the model
subclass (:mod:`fast.model`), the grouped GRU encoders (:mod:`fast.grouped`, :mod:`fast.recurrence`)
and the graphed step with prefetching (:mod:`fast.step`) are what it selects.
"""
