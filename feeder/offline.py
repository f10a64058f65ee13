"""The offline step of the ST-GCN methods (SkeletonCLR, CrosSCLR, AimCLR; docs/protocols.md,
"The ST-GCN methods' 50-frame clips"): what their published code does once to every clip before
training and evaluating. Here it runs in the loader on the prepared arrays, which stay as they are.
"""
import functools

import torch

from feeder.augment import resize_window

# ``--offline-step`` choices: none, or the ST-GCN methods' step to 50 frames
STEPS = ('none', 'stgcn50')


def valid_length(clip):
    """The published length of a clip (C, T, V, M): its frames whose first person's first joint is
    not at zero."""
    return int((clip[:, :, 0, 0].abs().sum(dim=0) != 0).sum())


def turn_to_shoulders(clip, across):
    """Each person of ``clip`` (3, T, V, M) turned about the vertical (z, as the prepared arrays hold
    it) frame by frame so that the shoulder vector, ``across`` = (from joints, to joints) and its
    vertical part dropped, points along +x: the published turn, whose direction for a whole clip
    follows the sign of the vector's summed depth (y here; the published code's z, in camera
    coordinates with y up), ``theta = -+arccos(v_x / (|v| + 1e-4))``."""
    start, end = across
    vector = clip[:, :, list(end)].mean(dim=2) - clip[:, :, list(start)].mean(dim=2)  # (3, T, M)
    x, y = vector[0], vector[1]
    angle = torch.arccos(x / (torch.sqrt(x * x + y * y) + 1e-4))
    angle = torch.where(y.sum(dim=0, keepdim=True) >= 0, -angle, angle)  # one direction per person
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]  # (T, 1, M)
    turned = torch.stack([cos * clip[0] - sin * clip[1], sin * clip[0] + cos * clip[1]])
    return torch.cat([turned, clip[2:]])


def fifty_frames(clip, layout, frames=50):
    """The published step on one clip (C, T, V, M) of ``layout``: its :func:`valid_length` frames,
    each joint less the layout's root (NTU's joint 21, the spine at the shoulders) per frame and
    person, linearly resized to ``frames`` (:func:`feeder.augment.resize_window`, as the published
    ``cv2.resize`` does), then :func:`turn_to_shoulders`. A clip with no valid frame gives zeros."""
    length = valid_length(clip)
    if length == 0:
        return clip.new_zeros((clip.shape[0], frames) + tuple(clip.shape[2:]))
    clip = clip - clip[:, :, layout.root:layout.root + 1]
    clip = resize_window(clip[None], torch.zeros(1, dtype=torch.long), torch.tensor([length]), frames)[0]
    return turn_to_shoulders(clip, layout.across)


def offline_transform(step, layout):
    """What ``step`` does to a clip of ``layout``, for :class:`feeder.datasets.SkeletonFolder`:
    ``None`` for ``none``."""
    if step not in STEPS:
        raise ValueError(f'unknown offline step {step!r}; known: {", ".join(STEPS)}')
    return None if step == 'none' else functools.partial(fifty_frames, layout=layout)


def check_step(step, dataset):
    """Whether ``step`` can run on ``dataset`` (a :class:`feeder.info.DatasetInfo`): the 50-frame
    step turns 3D clips about their vertical; an error in one line where it cannot."""
    if step == 'stgcn50' and dataset.coordinates != 3:
        raise SystemExit(f'error: --offline-step stgcn50 turns 3D clips about their vertical axis; {dataset.name} '
                         f'has {dataset.coordinates} coordinates per joint')
