"""CMD: per-modality MoCo learners that distil neighbourhood structure into each other
(docs/method.md, "The objective")."""
import copy
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from feeder.modalities import MODALITIES, to_modality
from models.losses import cmd_loss, infonce, topk_accuracy
from utils.dist import concat_all_gather


@dataclass(frozen=True)
class CMDConfig:
    """The settings of the CMD objective (docs/method.md, "The objective"), by the names of the
    pretraining arguments."""
    modalities: tuple
    dim: int
    queue_size: int
    momentum_key: float
    contrast_t: float
    topk: int
    teacher_t: float
    student_t: float
    cmd_weight: float

    @classmethod
    def from_dict(cls, values):
        """The config from any mapping holding its fields, e.g. ``vars(args)``."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


class CMD(nn.Module):
    """Query encoders, momentum key encoders and one key queue per modality. A method of
    ``models.METHODS`` (docs/method.md, "Methods"): two ``normal`` views, ``forward(views)``, the
    trained encoders from :meth:`encoders`.

    ``encoder_q``/``encoder_k`` are ``ModuleDict``s keyed by modality; ``queue`` is one buffer
    (modalities, dim, K) filled at a shared pointer, so index i of every modality's queue holds the
    same sample, which is what lets one modality's neighbours be looked up in another's.
    ``coordinates``: how many leading input channels are coordinates (default all; the rest, a
    confidence, is carried into every modality unchanged).
    """

    VIEWS = ('normal', 'normal')  # the query's and the key's (feeder/augment.py recipes)

    def __init__(self, make_encoder, layout, modalities=MODALITIES, dim=128, queue_size=16384,
                 momentum_key=0.999, contrast_t=0.07, topk=8192, teacher_t=0.05, student_t=0.1, cmd_weight=1.0,
                 coordinates=None):
        super().__init__()
        if topk > queue_size:
            raise ValueError(f'top-k ({topk}) cannot exceed the queue size ({queue_size})')
        self.layout, self.modalities, self.coordinates = layout, tuple(modalities), coordinates
        self.momentum_key, self.contrast_t = momentum_key, contrast_t
        self.topk, self.teacher_t, self.student_t, self.cmd_weight = topk, teacher_t, student_t, cmd_weight
        self.encoder_q = nn.ModuleDict({m: make_encoder() for m in self.modalities})
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        self.register_buffer('queue', F.normalize(torch.randn(len(self.modalities), dim, queue_size), dim=1))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    @classmethod
    def build(cls, make_encoder, args, dataset, **extra):
        """The model of parsed pretraining ``args`` for ``dataset`` (a :class:`feeder.info.DatasetInfo`);
        ``make_encoder()`` makes one encoder."""
        return cls(make_encoder, dataset.layout, **asdict(CMDConfig.from_dict(vars(args))),
                   coordinates=dataset.coordinates, **extra)

    def encoders(self):
        """The trained encoders, {modality: encoder}: what evaluation uses (the query encoders)."""
        return dict(self.encoder_q.items())

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        k = [p for p in self.encoder_k.parameters()]
        q = [p.detach() for p in self.encoder_q.parameters()]
        # m * k + (1 - m) * q in one pass over the weights
        torch._foreach_lerp_(k, q, 1 - self.momentum_key)

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

    def encode(self, encoders, view):
        """Normalised embeddings {modality: (N, dim)} of one view: each modality's encoder on
        that modality of the clip."""
        return {m: F.normalize(encoders[m](to_modality(view, m, self.layout, self.coordinates)), dim=1)
                for m in self.modalities}

    def embed(self, view_q, view_k):
        """Queries of the first view; keys of the second from the key encoders, momentum-updated
        first (no gradient)."""
        q = self.encode(self.encoder_q, view_q)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.encode(self.encoder_k, view_k)
        return q, k

    def forward(self, views):
        """One training step's loss on ``(view_q, view_k)``. Returns ``(total, stats)``: ``stats``
        holds the per-modality InfoNCE losses and top-1 contrastive accuracies and the CMD loss,
        detached."""
        q, k = self.embed(*views)
        queue = self.queue.clone()
        stats, total, student_sims, teacher_sims = {}, 0, {}, {}
        for i, m in enumerate(self.modalities):
            loss, logits, student_sims[m] = infonce(q[m], k[m], queue[i], self.contrast_t)
            total = total + loss
            teacher_sims[m] = k[m] @ queue[i]
            stats[f'infonce_{m}'] = loss.detach()
            stats[f'acc_{m}'] = topk_accuracy(logits)
        if len(self.modalities) > 1 and self.cmd_weight:
            cmd = self.cmd_weight * cmd_loss(student_sims, teacher_sims, self.topk, self.teacher_t, self.student_t)
            total = total + cmd
            stats['cmd'] = cmd.detach()
        self._dequeue_and_enqueue(torch.stack([k[m] for m in self.modalities]))
        return total, stats
