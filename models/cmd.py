"""CMD: per-modality MoCo learners that distil neighbourhood structure into each other."""
import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from feeder.modalities import to_modality
from models.gru import grouped_features
from models.losses import cmd_loss, infonce, topk_accuracy


class CMD(nn.Module):
    """Query encoders, momentum key encoders and one key queue per modality.

    ``encoder_q``/``encoder_k`` are ``ModuleDict``s keyed by modality; ``queue`` is one buffer
    (modalities, dim, K) filled at a shared pointer, so index i of every modality's queue holds the
    same sample, which is what lets one modality's neighbours be looked up in another's.

    ``grouped=True`` (published-mode GRU encoders) computes all modalities' encoders of one side
    together with :func:`models.gru.grouped_features` (``kernels`` picks its kernels;
    ``fp16_operands`` rounds the GRU layers' product operands to float16): the same function,
    laid out for CUDA graphs. ``overlap_keys=True`` computes the keys on a second
    CUDA stream while the queries are computed (one process only): neither recurrence fills the
    GPU on its own.
    """

    def __init__(self, make_encoder, layout, modalities=('joint', 'motion', 'bone'), dim=128,
                 queue_size=16384, momentum=0.999, contrast_t=0.07, topk=8192, teacher_t=0.05,
                 student_t=0.1, cmd_weight=1.0, grouped=False, kernels='auto',
                 fp16_operands=False, overlap_keys=False):
        super().__init__()
        if topk > queue_size:
            raise ValueError(f'top-k ({topk}) cannot exceed the queue size ({queue_size})')
        self.layout, self.modalities = layout, tuple(modalities)
        self.momentum, self.contrast_t = momentum, contrast_t
        self.topk, self.teacher_t, self.student_t, self.cmd_weight = topk, teacher_t, student_t, cmd_weight
        self.grouped, self.kernels, self.fp16_operands = grouped, kernels, fp16_operands
        self.overlap_keys = overlap_keys
        self.encoder_q = nn.ModuleDict({m: make_encoder() for m in self.modalities})
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        self.register_buffer('queue', F.normalize(torch.randn(len(self.modalities), dim, queue_size), dim=1))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        k = [p for p in self.encoder_k.parameters()]
        q = [p.detach() for p in self.encoder_q.parameters()]
        # m * k + (1 - m) * q in one pass over the weights
        torch._foreach_lerp_(k, q, 1 - self.momentum)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        """``keys``: (modalities, N, dim); all ranks' keys enter, so the queue holds the global batch."""
        keys = concat_all_gather(keys, dim=1)
        batch, size = keys.shape[1], self.queue.shape[2]
        if size % batch:
            raise ValueError(f'queue size {size} is not a multiple of the global batch {batch}')
        # index arithmetic on the device: reading the pointer on the host would stall the GPU
        slots = self.queue_ptr + torch.arange(batch, device=keys.device)
        self.queue.index_copy_(2, slots, keys.transpose(1, 2).to(self.queue.dtype))
        self.queue_ptr.add_(batch).remainder_(size)

    def _encode(self, encoders, view):
        """Normalised embeddings of ``view`` per modality."""
        inputs = [to_modality(view, m, self.layout) for m in self.modalities]
        if self.grouped:
            features = grouped_features([encoders[m] for m in self.modalities], inputs, self.kernels,
                                        self.fp16_operands)
            out = [encoders[m].fc(f) for m, f in zip(self.modalities, features)]
        else:
            out = [encoders[m](x) for m, x in zip(self.modalities, inputs)]
        return {m: F.normalize(o, dim=1) for m, o in zip(self.modalities, out)}

    @torch.no_grad()
    def _keys(self, view_k):
        self._momentum_update_key_encoder()
        return self._encode(self.encoder_k, view_k)

    def forward(self, view_q, view_k):
        """One training step's losses. Returns ``(total, stats)`` where ``stats`` holds the
        per-modality InfoNCE losses and top-1 accuracies, the CMD loss and the logits."""
        if self.overlap_keys and view_q.is_cuda:
            main, side = torch.cuda.current_stream(), _side_stream(view_q.device)
            # the side stream also waits for the previous step, so memory the allocator hands
            # it back is never still being read on the main stream
            side.wait_stream(main)
            with torch.cuda.stream(side):
                k = self._keys(view_k)
            q = self._encode(self.encoder_q, view_q)
            main.wait_stream(side)
        else:
            q = self._encode(self.encoder_q, view_q)
            k = self._keys(view_k)
        queue = self.queue.clone()
        stats, total, student_sims, teacher_sims = {}, 0, {}, {}
        for i, m in enumerate(self.modalities):
            loss, logits, student_sims[m] = infonce(q[m], k[m], queue[i], self.contrast_t)
            total = total + loss
            teacher_sims[m] = k[m] @ queue[i]
            stats[f'infonce_{m}'] = loss.detach()
            stats[f'acc_{m}'] = topk_accuracy(logits)
            stats[f'logits_{m}'] = logits.detach()
        if len(self.modalities) > 1 and self.cmd_weight:
            cmd = self.cmd_weight * cmd_loss(student_sims, teacher_sims, self.topk, self.teacher_t, self.student_t)
            total = total + cmd
            stats['cmd'] = cmd.detach()
        self._dequeue_and_enqueue(torch.stack([k[m] for m in self.modalities]))
        return total, stats


_SIDE_STREAMS = {}


def _side_stream(device):
    # one per device, made outside any graph capture (the first, eager steps make it)
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


@torch.no_grad()
def concat_all_gather(tensor, dim=0):
    """Concatenate ``tensor`` from every rank along ``dim`` (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=dim)
