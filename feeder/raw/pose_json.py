"""Pose estimators' own JSON files (docs/data.md, "Pose estimator output"): a folder of OpenPose
per-frame files, or one Kinetics-skeleton file (the st-gcn format), read into keypoints
(M, T, V, 2) and confidence (M, T, V) with the people linked into tracks
(:mod:`feeder.raw.tracking`). A frame number missing from the files is a frame without people."""
import json
import os
import re

import numpy as np

from feeder.raw.readers import DataFormatError
from feeder.raw.tracking import link_tracks, tracks_to_array

OPENPOSE_FILE = re.compile(r'.*_(\d+)_keypoints\.json')


def load_json(path):
    try:
        with open(path, 'rb') as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(path, None, f'not JSON ({e})') from None


def _numbers(values, count, path, what):
    if not isinstance(values, list) or len(values) != count:
        found = len(values) if isinstance(values, list) else 'none' if values is None else type(values).__name__
        raise DataFormatError(path, None, f'{what}: expected {count} numbers, found {found}')
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFormatError(path, None, f'{what}: not all numbers') from None


def _detection(xy, score, image_size):
    """(xy, confidence) of one person, a joint with a coordinate that is not finite missed."""
    finite = np.isfinite(xy).all(-1) & np.isfinite(score)
    xy, score = np.where(finite[:, None], xy, 0), np.where(finite, score, 0)
    return (xy * np.asarray(image_size, dtype=np.float64) if image_size else xy), score


def openpose_frames(folder):
    """A video folder's per-frame files, [(frame number, path)] sorted; other files are ignored
    (OpenPose's face and hand files, images)."""
    frames = []
    for file in os.listdir(folder):
        match = OPENPOSE_FILE.fullmatch(file)
        if match:
            frames.append((int(match.group(1)), os.path.join(folder, file)))
    frames.sort()
    for (a, first), (b, second) in zip(frames, frames[1:]):
        if a == b:
            raise DataFormatError(folder, None, f'frame {a} twice: {os.path.basename(first)} and {os.path.basename(second)}')
    return frames


def read_openpose_video(folder, num_joints, image_size=None):
    """One video's OpenPose output (``<anything>_<frame>_keypoints.json``, ``people[]
    .pose_keypoints_2d``: x, y, confidence per joint, 0 0 0 for a missed joint)."""
    files = openpose_frames(folder)
    if not files:
        raise DataFormatError(folder, None, 'no <name>_<frame number>_keypoints.json files')
    first = files[0][0]
    frames = [[] for _ in range(files[-1][0] - first + 1)]
    for number, path in files:
        frames[number - first] = openpose_people(load_json(path), path, num_joints, image_size)
    return tracks_to_array(link_tracks(frames), len(frames), num_joints)


def openpose_people(record, path, num_joints, image_size=None):
    """The detections (xy, confidence) of one OpenPose frame's JSON ``record`` read from ``path``."""
    people = record.get('people') if isinstance(record, dict) else None
    if not isinstance(people, list):
        raise DataFormatError(path, None, 'expected {"people": [...]}')
    detections = []
    for k, person in enumerate(people):
        values = person.get('pose_keypoints_2d') if isinstance(person, dict) else None
        points = _numbers(values, 3 * num_joints, path, f'person {k}, pose_keypoints_2d '
                          f'(x, y, confidence of {num_joints} joints)').reshape(num_joints, 3)
        detections.append(_detection(points[:, :2], points[:, 2], image_size))
    return detections


def read_kinetics_file(path, num_joints, image_size=None):
    """One Kinetics-skeleton file: keypoints, confidence and its own ``label_index`` (``None``
    where it has none). Coordinates are taken as they are unless ``image_size`` (W, H) undoes
    the division by the image's width and height."""
    record = load_json(path)
    data = record.get('data') if isinstance(record, dict) else None
    if not isinstance(data, list):
        raise DataFormatError(path, None, 'expected {"data": [{"frame_index": ..., "skeleton": [...]}, ...]}')
    indices = []
    for entry in data:
        index = entry.get('frame_index') if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            raise DataFormatError(path, None, f'a frame without an integer frame_index: {str(entry)[:60]}')
        indices.append(index)
    first = min(indices, default=0)
    frames = [[] for _ in range(max(indices, default=0) - first + 1)]
    for entry, index in zip(data, indices):
        for k, person in enumerate(entry.get('skeleton') or []):
            if not isinstance(person, dict):
                raise DataFormatError(path, None, f'frame {index}, person {k}: expected {{"pose": [...], "score": [...]}}')
            xy = _numbers(person.get('pose'), 2 * num_joints, path, f'frame {index}, person {k}, pose '
                          f'(x, y of {num_joints} joints)').reshape(num_joints, 2)
            score = _numbers(person.get('score'), num_joints, path, f'frame {index}, person {k}, score')
            frames[index - first].append(_detection(xy, score, image_size))
    label = record.get('label_index')
    if label is not None and (not isinstance(label, int) or isinstance(label, bool)):
        raise DataFormatError(path, None, f'label_index {label!r} is not an integer')
    return (*tracks_to_array(link_tracks(frames), len(frames), num_joints), label)
