"""The golden values of the published implementation (docs/checkpoints.md, "Golden values"), a
model of their configuration and a whole CMD model to and from the released layout, shared by the
CPU and CUDA parity tests."""
import os

import torch

from feeder.layouts import NTU25
from models.checkpoint import RELEASED_SUFFIX, released_encoder_state, strip_module
from models.cmd import CMD
from models.gru import GRUEncoder

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'cmd_published_tiny.pt')


def build(config, cls=CMD, **options):
    """A CMD model (or ``cls``, e.g. :class:`fast.model.FastCMD` with its ``options``) of the
    golden configuration."""
    def make_encoder():
        return GRUEncoder(150, config['hidden'], config['layers'], config['dim'], mlp=config['mlp'])
    return cls(make_encoder, NTU25, dim=config['dim'], queue_size=config['K'], momentum_key=config['m'],
               contrast_t=config['T'], topk=config['topk'], teacher_t=config['teacher_T'],
               student_t=config['student_T'], cmd_weight=config['cmd_weight'], **options)


@torch.no_grad()
def load_released_cmd(model, state):
    """Load a released CMD ``state_dict`` (GRU encoders) into a :class:`models.cmd.CMD`."""
    state = strip_module(state)
    for m, suffix in ((m, RELEASED_SUFFIX[m]) for m in model.modalities):
        for branch, encoders in (('q', model.encoder_q), ('k', model.encoder_k)):
            sub = released_encoder_state(state, branch, m)
            if not sub:
                raise KeyError(f'no encoder_{branch}{suffix}.* entries in the released checkpoint')
            missing, unexpected = encoders[m].load_released_state_dict(sub)
            if missing or unexpected:
                raise KeyError(f'encoder_{branch}{suffix}: missing {missing}, unexpected {unexpected}')
    for i, m in enumerate(model.modalities):
        model.queue[i].copy_(state[f'queue{RELEASED_SUFFIX[m]}'])
    model.queue_ptr.copy_(state['queue_ptr'].view(1))


def released_cmd_state(model):
    """A :class:`models.cmd.CMD` with GRU encoders in the released key layout."""
    state = {}
    for i, m in enumerate(model.modalities):
        suffix = RELEASED_SUFFIX[m]
        for branch, encoders in (('q', model.encoder_q), ('k', model.encoder_k)):
            for k, v in encoders[m].released_state_dict().items():
                state[f'encoder_{branch}{suffix}.{k}'] = v
        state[f'queue{suffix}'] = model.queue[i].clone()
        state[f'queue_ptr{suffix}'] = model.queue_ptr.clone()
    return state
