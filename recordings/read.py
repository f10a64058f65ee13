"""One recording of any pose format into tracked persons: keypoints (M, T, V, C), a confidence
(M, T, V) or none, and where each person is present (M, T). The formats are those of own pose data
(docs/data.md, "Your own data") plus NTU ``.skeleton`` and PKU-MMD skeleton ``.txt`` files; their
persons are tracked as preparation tracks them (the estimators' JSON by
:mod:`feeder.raw.tracking`, the Kinect's files by their body slots)."""
import os
from typing import NamedTuple

import numpy as np

from feeder.raw.custom import read_pyskl
from feeder.raw.pose_json import OPENPOSE_FILE, read_kinetics_file, read_openpose_video
from feeder.raw.readers import NTU_COLOR, NTU_XYZ, read_ntu_skeleton, read_pku_video

RECORDING_FORMATS = ('openpose', 'kinetics-json', 'npy', 'pyskl', 'ntu', 'pku')
SUFFIXES = {'.json': 'kinetics-json', '.npy': 'npy', '.pkl': 'pyskl', '.pickle': 'pyskl', '.skeleton': 'ntu',
            '.txt': 'pku'}


class Recording(NamedTuple):
    keypoint: np.ndarray  # (M, T, V, C) float32: a tracked person each
    score: np.ndarray     # (M, T, V) confidence, 0 where a joint was missed; None where the format has none
    format: str

    @property
    def frames(self):
        return self.keypoint.shape[1]

    @property
    def present(self):
        """(M, T): where each person holds a joint."""
        if self.score is not None:
            return (self.score > 0).any(-1)
        return (self.keypoint != 0).any(-1).any(-1)


def recording_format(path, fmt=None):
    """``--format`` if given, else what ``path`` is: a folder of OpenPose frames, or a file by suffix."""
    if fmt:
        return fmt
    if os.path.isdir(path):
        return 'openpose'
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--recording {path}: no such file or folder')
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f'--recording {path}: unknown kind of file; expected an OpenPose folder or a '
                         f'{", ".join(SUFFIXES)} file (or pass --format)')
    return SUFFIXES[suffix]


def _npy(path):
    try:
        keypoint = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f'--recording {path}: not a plain numeric .npy array ({e})') from None
    if keypoint.ndim == 3:
        keypoint = keypoint[None]
    if keypoint.ndim != 4 or keypoint.shape[-1] not in (2, 3):
        raise ValueError(f'--recording {path}: expected keypoints (T, V, C) or (M, T, V, C) with C 2 or 3, found '
                         f'{keypoint.shape}')
    return keypoint, None


def _pyskl(path):
    clips, _, _ = read_pyskl(path)
    if len(clips) != 1:
        raise ValueError(f'--recording {path}: holds {len(clips)} clips; a recording is one annotation')
    return clips[0].keypoint, clips[0].score


def _slots(bodies):
    """Kinect files' body slots, those that never hold a body left out (one kept)."""
    held = (bodies != 0).any((1, 2, 3))
    return bodies[held] if held.any() else bodies[:1]


def read_recording(path, layout, fmt=None, image_size=None, colour=False):
    """The :class:`Recording` at ``path`` of skeleton ``layout`` (its joint count is checked);
    ``colour``: read NTU files' colour-image coordinates (2D) rather than their 3D ones."""
    fmt = recording_format(path, fmt)
    if fmt not in RECORDING_FORMATS:
        raise ValueError(f'--format {fmt}: expected one of {", ".join(RECORDING_FORMATS)}')
    if fmt == 'openpose':
        if not os.path.isdir(path) or not any(OPENPOSE_FILE.fullmatch(f) for f in os.listdir(path)):
            raise ValueError(f'--recording {path}: expected a folder of OpenPose frames '
                             '(<name>_<frame number>_keypoints.json), found none')
        keypoint, score = read_openpose_video(path, layout.num_joints, image_size)
    elif fmt == 'kinetics-json':
        keypoint, score, _ = read_kinetics_file(path, layout.num_joints, image_size)
    elif fmt == 'npy':
        keypoint, score = _npy(path)
    elif fmt == 'pyskl':
        keypoint, score = _pyskl(path)
    elif fmt == 'ntu':
        keypoint, score = _slots(read_ntu_skeleton(path, columns=NTU_COLOR if colour else NTU_XYZ)), None
    else:
        keypoint, score = _slots(read_pku_video(path)), None
    if keypoint.shape[2] != layout.num_joints:
        raise ValueError(f'--recording {path}: {keypoint.shape[2]} joints, but the classifier\'s layout '
                         f'{layout.name} has {layout.num_joints}')
    keypoint = np.where(np.isfinite(keypoint), keypoint, 0).astype(np.float32)
    return Recording(keypoint, None if score is None else np.asarray(score, dtype=np.float32), fmt)
