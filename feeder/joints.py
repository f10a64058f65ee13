"""Named joints across layouts (docs/data.md, "Joints across layouts"): one vocabulary of joint names,
so that any two layouts map joint to joint by name; and clips of one dataset's skeleton made clips
of another's (:class:`SkeletonMap`: joints by name, 3D seen from the front by 2D, persons kept or
left empty), through which evaluation reads another dataset's clips and pretraining pools them.

A joint's name is read into the vocabulary by three rules, in order: the sides are written one way
(``shoulder_left``, ``l_shoulder`` and ``LeftShoulder`` are ``left_shoulder``); a built-in layout
whose name for a place means another place elsewhere says so (:data:`LAYOUT_NAMES`: NTU's and
Human3.6M's ``neck`` lies above the shoulders, where OpenPose's lies between them; Human3.6M's
``foot`` is the ankle); synonyms name one place (:data:`SYNONYMS`: ``hip_center``, ``spine_base``,
``mid_hip`` are the ``pelvis``). A joint the source lacks but can make is the mean of two it has
(:data:`DERIVED`: the pelvis between the hips, the neck between the shoulders, the spine amid the
four, the head between the ears); any other joint the source lacks stays zero, as a joint never detected does, and a
source joint the target lacks is dropped.
"""
import re
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

# canonical name: the names that mean the same place
SYNONYMS = {
    'pelvis': ('hip_center', 'spine_base', 'mid_hip', 'hips', 'root'),
    'spine': ('spine_mid', 'torso'),
    'neck': ('spine_shoulder', 'shoulder_center', 'thorax', 'mid_shoulder'),
    'left_hand_tip': ('left_handtip',),
    'right_hand_tip': ('right_handtip',),
    'left_toe': ('left_big_toe', 'left_foot_index', 'left_foot'),
    'right_toe': ('right_big_toe', 'right_foot_index', 'right_foot'),
}
# a built-in layout's own names that mean another place than the vocabulary's: Kinect v2's,
# Human3.6M's and the synthetic rig's neck is the top of the neck (their base is spine_shoulder,
# thorax and chest); Human3.6M's foot joint lies at the ankle
LAYOUT_NAMES = {
    'ntu25': {'neck': 'upper_neck'},
    'h36m17': {'neck': 'upper_neck', 'left_foot': 'left_ankle', 'right_foot': 'right_ankle'},
    'synthetic_rig': {'chest': 'neck', 'neck': 'upper_neck'},  # feeder/raw/synthetic.py's 3D rig
}
# a joint the source lacks, made as the mean of joints it has
DERIVED = {
    'pelvis': ('left_hip', 'right_hip'),
    'spine': ('left_hip', 'right_hip', 'left_shoulder', 'right_shoulder'),
    'neck': ('left_shoulder', 'right_shoulder'),
    'head': ('left_ear', 'right_ear'),
    'left_hand': ('left_index', 'left_pinky'),
    'right_hand': ('right_index', 'right_pinky'),
}
# fewest target joints a mapping must fill (by name or made)
LEAST_JOINTS = 8
_CANONICAL = {synonym: name for name, synonyms in SYNONYMS.items() for synonym in synonyms}
_SIDE = {'l': 'left', 'left': 'left', 'r': 'right', 'right': 'right'}


def canonical(name, layout_name=None):
    """The vocabulary's name of joint ``name`` of the layout called ``layout_name``."""
    words = re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name).lower().replace('-', '_').replace(' ', '_').split('_')
    words = [w for w in words if w]
    if len(words) > 1 and words[0] in _SIDE:
        words = [_SIDE[words[0]]] + words[1:]
    elif len(words) > 1 and words[-1] in _SIDE:
        words = [_SIDE[words[-1]]] + words[:-1]
    name = '_'.join(words)
    name = LAYOUT_NAMES.get(layout_name, {}).get(name, name)
    return _CANONICAL.get(name, name)


class JointMap(NamedTuple):
    """How clips of ``source`` become clips of ``target`` (two :class:`feeder.layouts.Layout`):
    ``matrix`` (target joints, source joints), each row a one-hot, a mean or zeros."""
    source: object
    target: object
    matrix: np.ndarray

    @property
    def identity(self):
        return self.source.joint_names == self.target.joint_names

    def describe(self):
        """{target joint: the source joint it takes, "mean of A, B", or None (left at zero)},
        and the source joints dropped: what is printed at start and recorded."""
        names, taken = self.source.joint_names, {}
        for t, row in enumerate(self.matrix):
            used = [names[s] for s in np.flatnonzero(row)]
            taken[self.target.joint_names[t]] = (used[0] if len(used) == 1 else f'mean of {", ".join(used)}'
                                                 if used else None)
        dropped = [names[s] for s in np.flatnonzero(~self.matrix.any(0))]
        return {'source': self.source.name, 'target': self.target.name, 'joints': taken, 'dropped': dropped}

    def summary(self):
        """One line: how many target joints come from the source, made, or left at zero."""
        joints = self.describe()['joints'].values()
        made = sum(isinstance(v, str) and v.startswith('mean of ') for v in joints)
        missing = sum(v is None for v in joints)
        return (f'{self.source.name} -> {self.target.name}: {len(joints) - made - missing} of '
                f'{self.target.num_joints} joints by name, {made} made as means, {missing} left at zero, '
                f'{len(self.describe()["dropped"])} of {self.source.num_joints} dropped')

    def apply(self, x, axis):
        """``x`` with its joint axis ``axis`` (of the source's joints) mapped onto the target's."""
        x = np.moveaxis(np.asarray(x), axis, -1)
        return np.moveaxis(x @ self.matrix.T.astype(x.dtype), -1, axis)


def joint_map(source, target):
    """The :class:`JointMap` from layout ``source`` to ``target``; an error where the target's
    centre, up or across joints (docs/data.md, "Skeleton layouts") cannot be taken or made, where
    fewer than :data:`LEAST_JOINTS` can, or where a layout names one place twice."""
    def places(layout):
        named = [canonical(n, layout.name) for n in layout.joint_names]
        twice = sorted({n for n in named if named.count(n) > 1})
        if twice:
            raise ValueError(f'layout {layout.name}: joints {", ".join(twice)} name one place twice (after the '
                             'vocabulary of docs/data.md, "Joints across layouts")')
        return {n: v for v, n in enumerate(named)}

    have, want = places(source), places(target)
    matrix = np.zeros((target.num_joints, source.num_joints))
    for name, t in want.items():
        if name in have:
            matrix[t, have[name]] = 1.0
        elif name in DERIVED and all(part in have for part in DERIVED[name]):
            for part in DERIVED[name]:
                matrix[t, have[part]] = 1 / len(DERIVED[name])
    filled = matrix.any(1)
    needed = sorted({v for joints in (target.center, *target.up, *target.across) for v in joints})
    lacking = [target.joint_names[v] for v in needed if not filled[v]]
    least = min(LEAST_JOINTS, target.num_joints)
    if lacking or filled.sum() < least:
        reason = (f'{target.name}\'s alignment joints {", ".join(lacking)} are neither in {source.name} nor made '
                  'from its joints' if lacking else
                  f'they share {int(filled.sum())} joints by name, fewer than {least}')
        raise ValueError(f'layout {source.name} cannot be mapped onto {target.name}: {reason} (a layout JSON can '
                         'rename its joints, docs/data.md, "Joints across layouts")')
    return JointMap(source, target, matrix)


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
    :class:`feeder.info.DatasetInfo`; docs/protocols.md, "Across datasets"): channels as
    :func:`_channels`, joints by :class:`JointMap`, the first ``target.persons`` persons (missing
    ones empty)."""

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
