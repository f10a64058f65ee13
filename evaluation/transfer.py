"""Clips of one dataset read by encoders pretrained on another's skeleton (docs/protocols.md, "Across
datasets"): joints mapped by name (:mod:`feeder.joints`), persons kept or left empty, and 3D clips
seen from the front by a 2D encoder."""
import torch
from torch import nn

from feeder.joints import joint_map


def _channels(source, target):
    """The source channels a target's clip is made of, each (index, sign), or the one-line error.
    Prepared 3D clips stand on +z with their across direction (left to right shoulder) on +x
    (docs/data.md); a camera facing the person sees that right shoulder on the image's left, so a
    2D encoder, trained on images with y up, reads (-x, z)."""
    if source == target:
        return None
    if source == 'xyz' and target == 'xy':
        return ((0, -1.0), (2, 1.0))
    if source == 'xys' and target == 'xy':
        return ((0, 1.0), (1, 1.0))
    raise ValueError(f'clips of channels {source} cannot feed an encoder trained on {target} clips (3D clips feed 2D '
                     'encoders, never the reverse; a confidence channel is dropped, never made)')


class SkeletonMap(nn.Module):
    """Clips (N, C, T, V, M) of dataset ``source`` made into clips of ``target``'s skeleton (two
    :class:`feeder.info.DatasetInfo`): channels as :func:`_channels`, joints by
    :class:`feeder.joints.JointMap`, the first ``target.persons`` persons (missing ones empty)."""

    def __init__(self, source, target):
        super().__init__()
        self.joints = joint_map(source.layout, target.layout)
        channels = _channels(source.channels, target.channels)
        self.pick = None if channels is None else [c for c, _ in channels]
        # not in state dicts: a classifier's map is made anew for the data it reads
        self.register_buffer('sign', torch.tensor([1.0] * len(target.channels) if channels is None else
                                                  [s for _, s in channels]).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer('matrix', torch.tensor(self.joints.matrix, dtype=torch.float32), persistent=False)
        self.persons = target.persons
        self.record = {**self.joints.describe(), 'from': f'{source.name} ({source.channels}, {source.persons} '
                       f'person{"s" if source.persons > 1 else ""})',
                       'to': f'{target.name} ({target.channels}, {target.persons} person'
                             f'{"s" if target.persons > 1 else ""})',
                       'channels': None if channels is None else [f'{"-" if s < 0 else ""}{source.channels[c]}'
                                                                  for c, s in channels]}

    def summary(self):
        channels = f'; channels {", ".join(self.record["channels"])}' if self.record['channels'] else ''
        return f'{self.record["from"]} read as {self.record["to"]}: {self.joints.summary()}{channels}'

    def forward(self, clips):
        if self.pick is not None:
            clips = clips[:, self.pick]
        clips = torch.einsum('nctvm,wv->nctwm', clips * self.sign, self.matrix.to(clips.dtype))
        persons = clips.shape[-1]
        if persons >= self.persons:
            return clips[..., :self.persons]
        return torch.cat([clips, clips.new_zeros(clips.shape[:-1] + (self.persons - persons,))], dim=-1)


def skeleton_map(source, target):
    """A :class:`SkeletonMap` from ``source`` to ``target``, ``None`` where their skeletons agree."""
    return None if source.skeleton == target.skeleton else SkeletonMap(source, target)
