"""CMD computed for speed: the same function as :class:`models.cmd.CMD` (docs/fast-path.md).

Only how the embeddings are computed changes; the parameters, buffers, losses and checkpoints are
the reference model's.
"""
import torch
import torch.nn.functional as F

from fast.grouped import grouped_features
from models.cmd import CMD


def computes(method):
    """Whether the fast model computes ``method`` (a method's class): CMD alone."""
    return method is CMD


class FastCMD(CMD):
    """``grouped``: all modalities' encoders of one side computed together
    (:func:`fast.grouped.grouped_features`, published-mode GRU encoders; ``kernels`` and
    ``recurrent_fp16`` as there). ``overlap_keys``: the keys computed on a second CUDA stream
    while the queries are computed (one process): neither recurrence fills the GPU on its own."""

    def __init__(self, *args, grouped=False, kernels='auto', recurrent_fp16=False, overlap_keys=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.grouped, self.kernels, self.recurrent_fp16 = grouped, kernels, recurrent_fp16
        self.overlap_keys = overlap_keys

    def encode(self, encoders, view):
        if not self.grouped:
            return super().encode(encoders, view)
        inputs = [self.inputs(view, m) for m in self.modalities]
        features = grouped_features([encoders[m] for m in self.modalities], inputs, self.kernels, self.recurrent_fp16)
        return {m: F.normalize(encoders[m].fc(f), dim=1) for m, f in zip(self.modalities, features)}

    def embed(self, view_q, view_k):
        if not (self.overlap_keys and view_q.is_cuda):
            return super().embed(view_q, view_k)
        main, side = torch.cuda.current_stream(), _side_stream(view_q.device)
        # the side stream also waits for the previous step, so memory the allocator hands it back
        # is never still being read on the main stream
        side.wait_stream(main)
        with torch.cuda.stream(side), torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.encode(self.encoder_k, view_k)
        q = self.encode(self.encoder_q, view_q)
        main.wait_stream(side)
        return q, k


_SIDE_STREAMS = {}


def _side_stream(device):
    # one per device, made outside any graph capture (the first, eager steps make it)
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]
