"""Own pose data in (``python -m feeder.prepare --dataset custom``): the annotation pickle of pyskl
and mmaction2, or a folder of ``.npy`` clips, for any skeleton layout, 2D or 3D (docs/data.md,
"Your own data")."""
import csv
import os
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from feeder.info import PARTS
from feeder.layouts import Layout
from feeder.raw.normalize import (body_axes, fill_missing, frame_rotation, mark_missing, motion_energy,
                                  normalize_pose_data)
from utils import safe_pickle


class CustomDataError(ValueError):
    """Input that is not what ``--annotations`` expects; the message names the file."""


def split_part(name, source):
    """A split's name -> (benchmark, part): ``P_train`` -> (P, train), ``P_val`` or ``P_test`` ->
    (P, val); bare ``train``/``val``/``test`` belong to benchmark ``all``."""
    match = re.fullmatch(r'(?:(.+)_)?(train|val|test)', name)
    if match is None:
        raise CustomDataError(f'{source}: split {name!r} is not named P_train, P_val, P_test, train, val or test')
    return match.group(1) or 'all', 'train' if match.group(2) == 'train' else 'val'


def channels_of(data_channels, has_score, asked, source):
    """What the last axis holds: ``asked`` (--channels) if given, else xyz for 3 numbers and xy for
    2. A confidence (``keypoint_score``, or a third number with ``--channels xys``) always marks
    missing joints; only ``xys`` also feeds it to the encoders, where contrastive pretraining can
    use its per-clip noise as a fingerprint instead of learning the motion (docs/data.md)."""
    if asked is None:
        return 'xyz' if data_channels == 3 else 'xy'
    needed = {'xyz': 3, 'xy': 2, 'xys': 2 if has_score else 3}[asked]
    if data_channels != needed and not (asked == 'xy' and data_channels == 3):
        raise CustomDataError(f'{source}: --channels {asked} needs {needed} numbers per joint, the data has '
                              f'{data_channels}')
    return asked


def _clip(keypoint, score, name, source):
    keypoint = np.asarray(keypoint)
    if keypoint.ndim == 3:
        keypoint = keypoint[None]
    if keypoint.ndim != 4 or keypoint.shape[-1] not in (2, 3) or min(keypoint.shape) < 1:
        raise CustomDataError(f'{source}: clip {name}: expected keypoints (M, T, V, C) or (T, V, C) with C 2 or 3, '
                              f'found {keypoint.shape}')
    if score is not None:
        score = np.asarray(score)
        if score.ndim == 2:
            score = score[None]
        if score.shape != keypoint.shape[:3]:
            raise CustomDataError(f'{source}: clip {name}: keypoint_score {score.shape} does not match the keypoints '
                                  f'{keypoint.shape[:3]}')
    return keypoint, score


class CustomClip(NamedTuple):
    name: str
    keypoint: np.ndarray   # (M, T, V, C)
    score: np.ndarray      # (M, T, V) or None
    label: int             # -1 where unlabelled
    parts: dict            # {benchmark: part}


class CustomData(NamedTuple):
    """What :func:`read_custom` found: the clips, their joints and channels, the benchmarks with
    their parts, the classes, and what was left out (reason -> names)."""
    clips: list
    joints: int
    channels: str
    benchmarks: dict
    num_classes: int
    class_names: tuple
    left_out: dict


def read_pyskl(path):
    """The clips of a pyskl/mmaction2 annotation pickle, class names (none) and what was left out."""
    try:
        record = safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS, what='annotation file')
    except ValueError as e:
        raise CustomDataError(str(e)) from None
    if isinstance(record, dict) and 'annotations' in record:
        annotations, splits = record['annotations'], record.get('split')
    elif isinstance(record, list):
        annotations, splits = record, None
    else:
        raise CustomDataError(f'{path}: expected {{"split": {{...}}, "annotations": [...]}} or a list of annotations')
    parts = {}
    for split, names in (splits or {}).items():
        benchmark, part = split_part(split, path)
        for name in names:
            parts.setdefault(str(name), {})[benchmark] = part
    clips, left_out = [], {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or 'keypoint' not in ann or 'frame_dir' not in ann:
            raise CustomDataError(f'{path}: annotation {i}: expected a dict with "frame_dir" and "keypoint"')
        name = str(ann['frame_dir'])
        keypoint, score = _clip(ann['keypoint'], ann.get('keypoint_score'), name, path)
        label = int(ann['label']) if ann.get('label') is not None else -1
        if splits is None:
            clip_parts = {'all': 'train'}
        elif name in parts:
            clip_parts = parts[name]
        else:
            left_out.setdefault('in no split', []).append(name)
            continue
        clips.append(CustomClip(name, keypoint, score, label, clip_parts))
    return clips, (), left_out


def read_labels_csv(path):
    """``labels.csv`` beside clips: rows ``name,label[,split]`` (a header line ``name,...`` and
    ``#`` comments allowed; a name may end in its file's extension) -> {name: (label, {benchmark:
    part})}; a clip without a split trains in benchmark ``all``."""
    rows = {}
    with open(path, newline='') as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith('#') or (lineno == 1 and row[0] == 'name'):
                continue
            if len(row) not in (2, 3):
                raise CustomDataError(f'{path}, line {lineno}: expected name,label[,split]')
            try:
                label = int(row[1])
            except ValueError:
                raise CustomDataError(f'{path}, line {lineno}: label {row[1]!r} is not an integer') from None
            benchmark, part = split_part(row[2], f'{path}, line {lineno}') if len(row) == 3 else ('all', 'train')
            name = os.path.splitext(row[0])[0] if row[0].endswith(('.npy', '.json')) else row[0]
            entry = rows.setdefault(name, (label, {}))
            if entry[0] != label:
                raise CustomDataError(f'{path}, line {lineno}: {name} has labels {entry[0]} and {label}')
            entry[1][benchmark] = part
    return rows


def read_classes_txt(path):
    """``classes.txt``: one class name per line, in label order."""
    with open(path) as f:
        return tuple(line.strip() for line in f if line.strip())


def read_npy_folder(folder):
    """The same from a folder of ``.npy`` clips with optional ``labels.csv`` and ``classes.txt``."""
    files = sorted(f for f in os.listdir(folder) if f.endswith('.npy'))
    if not files:
        raise CustomDataError(f'{folder}: no .npy clips')
    labels_path, classes_path = os.path.join(folder, 'labels.csv'), os.path.join(folder, 'classes.txt')
    rows = read_labels_csv(labels_path) if os.path.isfile(labels_path) else {}
    class_names = read_classes_txt(classes_path) if os.path.isfile(classes_path) else ()
    clips, left_out = [], {}
    for file in files:
        name = file[:-4]
        try:
            keypoint = np.load(os.path.join(folder, file), allow_pickle=False)
        except ValueError as e:
            raise CustomDataError(f'{os.path.join(folder, file)}: not a plain numeric .npy array ({e})') from None
        keypoint, _ = _clip(keypoint, None, name, os.path.join(folder, file))
        if rows and name not in rows:
            left_out.setdefault('not in labels.csv', []).append(name)
            continue
        label, clip_parts = rows.get(name, (-1, {'all': 'train'}))
        clips.append(CustomClip(name, keypoint, None, label, clip_parts))
    return clips, class_names, left_out


def read_custom(path, asked_channels=None):
    """The clips of ``--annotations`` (a pyskl pickle or a folder of ``.npy`` clips) as
    :class:`CustomData`."""
    if os.path.isdir(path):
        clips, class_names, left_out = read_npy_folder(path)
    elif os.path.isfile(path):
        clips, class_names, left_out = read_pyskl(path)
    else:
        raise CustomDataError(f'--annotations {path}: no such file or folder')
    if not clips:
        raise CustomDataError(f'--annotations {path}: no clips')
    shapes = {(c.keypoint.shape[2], c.keypoint.shape[3], c.score is not None) for c in clips}
    if len(shapes) > 1:
        raise CustomDataError(f'--annotations {path}: clips differ in joints, channels or confidence: '
                              f'{sorted(shapes)[:3]}')
    joints, data_channels, has_score = shapes.pop()
    channels = channels_of(data_channels, has_score, asked_channels, f'--annotations {path}')
    benchmarks = {}
    for clip in clips:
        for benchmark, part in clip.parts.items():
            benchmarks.setdefault(benchmark, set()).add(part)
    for benchmark, parts in benchmarks.items():
        if 'train' not in parts:
            raise CustomDataError(f'--annotations {path}: benchmark {benchmark} has no training clips')
    labels = [clip.label for clip in clips]
    num_classes = max(max(labels) + 1, len(class_names)) if max(labels) >= 0 else 0
    ordered = {b: tuple(p for p in PARTS if p in parts) for b, parts in sorted(benchmarks.items())}
    return CustomData(clips, joints, channels, ordered, num_classes, class_names, left_out)


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
