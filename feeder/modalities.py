"""The three input modalities of CMD, derived from the joint stream (docs/method.md, "Modalities")."""
import functools

import torch

MODALITIES = ('joint', 'motion', 'bone')
FUSED = 'fused'  # the name of several streams' fused result (docs/protocols.md)


def result_name(streams):
    """The name a result of ``streams`` goes under: the fusion's for several, else the stream's."""
    return FUSED if len(streams) > 1 else streams[0]


def bone_parents(layout):
    """Index v2 for each joint v1 so that ``bone = x - x[..., parents, :]``."""
    return [parent for _, parent in layout.bone_pairs]


@functools.lru_cache(maxsize=None)
def _parent_index(layout, device):
    # made once per device: a host-to-device copy inside every step would break CUDA graph capture
    return torch.tensor(bone_parents(layout), device=device)


def to_modality(x, modality, layout, coordinates=None):
    """``x`` is (N, C, T, V, M) joint coordinates; returns the same shape. With ``coordinates``
    fewer than C, the channels after them (a detector's confidence) are carried along, never
    differenced: motion and bone keep each joint's own confidence."""
    if modality not in MODALITIES:
        raise ValueError(f'unknown modality {modality!r}; expected one of {MODALITIES}')
    if modality == 'joint':
        return x
    if coordinates is not None and coordinates < x.shape[1]:
        return torch.cat([to_modality(x[:, :coordinates], modality, layout), x[:, coordinates:]], dim=1)
    if modality == 'motion':
        # frame t holds x[t + 1] - x[t]; the last frame has no successor and stays zero
        return torch.cat([x[:, :, 1:] - x[:, :, :-1], torch.zeros_like(x[:, :, :1])], dim=2)
    # under torch.export (export.py) the cache would keep the tracer's stand-in tensor
    parents = torch.tensor(bone_parents(layout), device=x.device) if torch.compiler.is_compiling() \
        else _parent_index(layout, x.device)
    return x - x.index_select(3, parents)
