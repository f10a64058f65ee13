"""Clips of pose data prepared without losing what the coordinates hold (docs/data.md, "Your own
data"): the persons kept, missed joints marked and filled along time, the turn of ``--align``, then
:func:`feeder.raw.normalize.normalize_pose_data`. Every source of pose data (own files, NTU's colour
coordinates) goes through :func:`custom_clip`."""
from dataclasses import dataclass

import numpy as np

from feeder.layouts import Layout
from feeder.raw.normalize import (body_axes, fill_missing, frame_rotation, mark_missing, motion_energy,
                                  normalize_pose_data)


@dataclass(frozen=True)
class PosePreparation:
    """How clips of pose data are prepared (docs/data.md, "Your own data"): the channels kept,
    persons, layout, ``fill`` ('linear' or 'zero') and ``align`` ('clip', 'dataset' or 'none';
    ``rotation``, a 3 x 3 array, is the dataset's turn for 'dataset')."""
    channels: str
    persons: int
    layout: Layout
    fill: str = 'linear'
    align: str = 'clip'
    rotation: np.ndarray = None
    image_size: tuple = None  # (W, H): undoes JSON coordinates divided by the image's size

    @property
    def coordinates(self):
        return 3 if self.channels == 'xyz' else 2


def chosen_points(keypoint, score, prep):
    """The ``prep.persons`` most active bodies of a clip (in their order), missed joints marked
    and (with fill 'linear') filled along time: points (M, T, V, c) float64, confidence (0 where
    missed, filled or not, so ``confidence > 0`` marks the detections) and the mask of joints to
    use."""
    if score is None and prep.channels == 'xys':
        score = keypoint[..., 2]
    points, confidence, present = mark_missing(keypoint[..., :prep.coordinates], score)
    # the most active bodies where there are more, but in the source's order: tracked data (motion
    # capture, Kinect body IDs) orders its persons by role, and untracked data has no order to lose
    order = np.sort(np.argsort(-motion_energy(points), kind='stable')[:prep.persons])
    points, confidence, present = points[order], confidence[order], present[order]
    if prep.fill == 'linear':
        points, present = fill_missing(points, present)
    return points, confidence, present


def clip_axes(keypoint, score, prep):
    """A 3D clip's own up and across directions, as :func:`custom_clip` would see them."""
    points, _, present = chosen_points(keypoint, score, prep)
    return body_axes(points, present, prep.layout)


def custom_clip(keypoint, score, prep):
    """One clip of pose data, normalised (docs/data.md, "Your own data"): :func:`chosen_points`,
    then in 3D the turn of ``prep.align`` (its own frame for 'clip', ``prep.rotation`` for
    'dataset'), then :func:`normalize_pose_data`; with channels xys the confidence is the last
    channel. Returns ((M, T, V, C) float32, T)."""
    points, confidence, present = chosen_points(keypoint, score, prep)
    rotation = None
    if prep.coordinates == 3 and prep.align == 'clip':
        rotation = frame_rotation(*body_axes(points, present, prep.layout))
    elif prep.coordinates == 3 and prep.align == 'dataset':
        rotation = prep.rotation
    clip = normalize_pose_data(points, present, prep.layout, rotation, detected=confidence > 0)
    if prep.channels == 'xys':
        clip = np.concatenate([clip, confidence[..., None].astype(np.float32)], axis=-1)
    return clip, clip.shape[1]
