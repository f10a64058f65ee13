"""The formats of own pose data (``python -m feeder.prepare --dataset custom``): the annotation pickle
of pyskl and mmaction2, a folder of ``.npy`` clips, OpenPose's per-frame JSON output or
Kinetics-skeleton JSON files, for any skeleton layout, 2D or 3D (docs/data.md, "Your own data"):
each listed in the main process and loaded in a worker; :mod:`feeder.raw.pose` prepares them."""
import csv
import os
import re
from collections import Counter
from typing import Callable, NamedTuple

import numpy as np

from feeder.info import PARTS
from feeder.raw.pose_json import OPENPOSE_FILE, load_json, read_kinetics_file, read_openpose_video
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


def _keypoint_shape(shape, name, source):
    """(M, T, V, C) of a clip's keypoints of ``shape`` ((T, V, C) has one person), or the error."""
    shape = tuple(shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or shape[-1] not in (2, 3) or min(shape) < 1:
        raise CustomDataError(f'{source}: clip {name}: expected keypoints (M, T, V, C) or (T, V, C) with C 2 or 3, '
                              f'found {shape}')
    return shape


def _clip(keypoint, score, name, source):
    keypoint = np.asarray(keypoint)
    keypoint = keypoint.reshape(_keypoint_shape(keypoint.shape, name, source))
    if score is not None:
        score = np.asarray(score)
        if score.ndim == 2:
            score = score[None]
        if score.shape != keypoint.shape[:3]:
            raise CustomDataError(f'{source}: clip {name}: keypoint_score {score.shape} does not match the keypoints '
                                  f'{keypoint.shape[:3]}')
    return keypoint, score


class CustomClip(NamedTuple):
    """One clip of own data: in memory (a pyskl pickle's ``keypoint`` and ``score``) or a file
    read by a worker (``path``, with ``keypoint`` None)."""
    name: str
    keypoint: np.ndarray   # (M, T, V, C)
    score: np.ndarray      # (M, T, V) or None
    label: int             # -1 where unlabelled (or, for Kinetics-skeleton files, read from the file)
    parts: dict            # {benchmark: part}
    path: str = None


class CustomData(NamedTuple):
    """What :func:`list_clips` found: the format, the clips, their joints, channels and persons,
    the benchmarks with their parts, the classes, and what was left out (reason -> names)."""
    format: str
    clips: list
    joints: int
    channels: str
    persons: int
    benchmarks: dict
    num_classes: int
    class_names: tuple
    left_out: dict


def read_pyskl(path, skip_bad=False):
    """The clips of a pyskl/mmaction2 annotation pickle, class names (none) and what was left out
    (with ``skip_bad``, malformed annotations too, as "bad file")."""
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
        try:
            if not isinstance(ann, dict) or 'keypoint' not in ann or 'frame_dir' not in ann:
                raise CustomDataError(f'{path}: annotation {i}: expected a dict with "frame_dir" and "keypoint"')
            name = str(ann['frame_dir'])
            keypoint, score = _clip(ann['keypoint'], ann.get('keypoint_score'), name, path)
        except CustomDataError as e:
            if not skip_bad:
                raise
            left_out.setdefault('bad file', []).append(str(e))
            continue
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


def _with_labels_csv(folder, clips, left_out):
    """The folder's ``labels.csv`` applied: only the clips it names, with its labels and splits
    (a split it does not give keeps the clip's own); and its ``classes.txt``."""
    labels_path, classes_path = os.path.join(folder, 'labels.csv'), os.path.join(folder, 'classes.txt')
    class_names = read_classes_txt(classes_path) if os.path.isfile(classes_path) else ()
    if not os.path.isfile(labels_path):
        return clips, class_names
    rows, kept = read_labels_csv(labels_path), []
    for clip in clips:
        if clip.name not in rows:
            left_out.setdefault('not in labels.csv', []).append(clip.name)
            continue
        label, parts = rows[clip.name]
        if clip.label >= 0 and clip.label != label:
            raise CustomDataError(f'{labels_path}: {clip.name} has label {label}, its label file {clip.label}')
        kept.append(clip._replace(label=label, parts=parts if parts != {'all': 'train'} else clip.parts))
    return kept, class_names


class Listed(NamedTuple):
    """What a format's lister found: the clips, the class names, what was left out, each clip's
    (joints, numbers per joint, has a confidence), and the most persons a clip holds."""
    clips: list
    class_names: tuple
    left_out: dict
    shape_of: Callable
    persons: int


def list_pyskl(path, layout, skip_bad):
    clips, class_names, left_out = read_pyskl(path, skip_bad)
    return Listed(clips, class_names, left_out,
                  lambda clip: (clip.keypoint.shape[2], clip.keypoint.shape[3], clip.score is not None),
                  max((clip.keypoint.shape[0] for clip in clips), default=1))


def load_pyskl(clip, prep):
    return clip.keypoint, clip.score, None


def list_npy_folder(folder, layout, skip_bad):
    """The ``.npy`` clips of a folder, as files; their shapes come from the headers alone."""
    clips, shapes, left_out = [], {}, {}
    for file in sorted(f for f in os.listdir(folder) if f.endswith('.npy')):
        path = os.path.join(folder, file)
        try:
            shapes[path] = _keypoint_shape(_read_npy(path, mmap_mode='r').shape, file[:-4], path)
        except CustomDataError as e:
            if not skip_bad:
                raise
            left_out.setdefault('bad file', []).append(str(e))
            continue
        clips.append(CustomClip(file[:-4], None, None, -1, {'all': 'train'}, path))
    clips, class_names = _with_labels_csv(folder, clips, left_out)
    return Listed(clips, class_names, left_out, lambda clip: (shapes[clip.path][2], shapes[clip.path][3], False),
                  max((shape[0] for shape in shapes.values()), default=1))


def _read_npy(path, mmap_mode=None):
    """A plain numeric ``.npy`` array (memory-mapped: its header alone), or the error."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CustomDataError(f'{path}: not a plain numeric .npy array ({e})') from None


def load_npy(clip, prep):
    keypoint, _ = _clip(_read_npy(clip.path), None, clip.name, clip.path)
    if keypoint.shape[2] != prep.layout.num_joints:
        raise CustomDataError(f'{clip.path}: {keypoint.shape[2]} joints, the layout has {prep.layout.num_joints}')
    return keypoint, None, None


def _untracked(clips, class_names, left_out, layout):
    """Estimator output: every clip of the layout's joints, x and y with a confidence, and two
    persons kept whatever the tracks."""
    return Listed(clips, class_names, left_out, lambda clip: (layout.num_joints, 2, True), 2)


def list_openpose_folder(folder, layout, skip_bad):
    """One clip per video folder that holds OpenPose per-frame files."""
    clips = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and any(OPENPOSE_FILE.fullmatch(f) for f in os.listdir(path)):
            clips.append(CustomClip(name, None, None, -1, {'all': 'train'}, path))
    left_out = {}
    clips, class_names = _with_labels_csv(folder, clips, left_out)
    return _untracked(clips, class_names, left_out, layout)


def load_openpose(clip, prep):
    return (*read_openpose_video(clip.path, prep.layout.num_joints, prep.image_size), None)


def list_kinetics_folder(folder, layout, skip_bad):
    """Kinetics-skeleton files: directly in ``folder`` (benchmark ``all``, training), or in split
    folders (``kinetics_train`` -> benchmark ``kinetics``, part train) with their optional
    ``<split folder>_label.json``."""
    clips, names, left_out = [], {}, {}
    groups = [(folder, {'all': 'train'}, None)]
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isdir(path):
            benchmark, part = split_part(entry, path)
            labels = os.path.join(folder, f'{entry}_label.json')
            groups.append((path, {benchmark: part}, labels if os.path.isfile(labels) else None))
    for path, parts, labels_path in groups:
        labels = load_json(labels_path) if labels_path else {}
        if not isinstance(labels, dict):
            raise CustomDataError(f'{labels_path}: expected {{video: {{"has_skeleton", "label", "label_index"}}}}')
        for file in sorted(f for f in os.listdir(path) if f.endswith('.json') and not f.endswith('_label.json')):
            name = file[:-5]
            record = labels.get(name, {})
            if record.get('has_skeleton') is False:
                left_out.setdefault('no body', []).append(name)
                continue
            label = record.get('label_index', -1)
            if not isinstance(label, int):
                raise CustomDataError(f'{labels_path}: {name}: label_index {label!r} is not an integer')
            if label >= 0 and isinstance(record.get('label'), str):
                names[label] = record['label']
            clips.append(CustomClip(name, None, None, label, parts, os.path.join(path, file)))
    class_names = tuple(names.get(i, str(i)) for i in range(max(names) + 1)) if names else ()
    clips, listed_names = _with_labels_csv(folder, clips, left_out)
    return _untracked(clips, listed_names or class_names, left_out, layout)


def load_kinetics(clip, prep):
    return read_kinetics_file(clip.path, prep.layout.num_joints, prep.image_size)


class PoseFormat(NamedTuple):
    """A format of own pose data: ``list(path, layout, skip_bad)`` finds its clips in the main
    process (:class:`Listed`); ``load(clip, prep)`` reads one, in a worker where it is a file,
    as (keypoints (M, T, V, C), confidence or ``None``, the file's own label or ``None``)."""
    list: Callable
    load: Callable


POSE_FORMATS = {
    'pyskl': PoseFormat(list_pyskl, load_pyskl),
    'npy': PoseFormat(list_npy_folder, load_npy),
    'openpose': PoseFormat(list_openpose_folder, load_openpose),
    'kinetics-json': PoseFormat(list_kinetics_folder, load_kinetics),
}
FORMATS = tuple(POSE_FORMATS)


def detect_format(path):
    """The format of ``--annotations``, from what it holds."""
    if os.path.isfile(path):
        return 'pyskl'
    if not os.path.isdir(path):
        raise CustomDataError(f'--annotations {path}: no such file or folder')
    entries = sorted(os.listdir(path))
    if any(e.endswith('.npy') for e in entries):
        return 'npy'
    for entry in entries:
        sub = os.path.join(path, entry)
        if os.path.isdir(sub):
            files = os.listdir(sub)
            if any(OPENPOSE_FILE.fullmatch(f) for f in files):
                return 'openpose'
            if any(f.endswith('.json') for f in files):
                return 'kinetics-json'
    if any(e.endswith('.json') for e in entries):
        return 'kinetics-json'
    raise CustomDataError(f'--annotations {path}: holds no .npy clips, OpenPose video folders or Kinetics-skeleton '
                          'files (expected one of those, or a pyskl pickle file)')


def _keep_common_shape(clips, shape_of, path, left_out):
    """With ``--skip-bad``: the clips of the most common (joints, numbers per joint, confidence),
    the others listed as bad files."""
    shapes = Counter(shape_of(clip) for clip in clips)
    common = shapes.most_common(1)[0][0] if shapes else None
    for clip in clips:
        if shape_of(clip) != common:
            left_out.setdefault('bad file', []).append(
                f'{clip.path or path}: clip {clip.name}: {shape_of(clip)[0]} joints of {shape_of(clip)[1]} numbers, '
                f'most clips {common[0]} of {common[1]}')
    return [clip for clip in clips if shape_of(clip) == common]


def list_clips(path, layout, fmt=None, asked_channels=None, skip_bad=False):
    """The clips of ``--annotations`` in format ``fmt`` (a key of :data:`POSE_FORMATS`; found from
    the content where ``None``) as :class:`CustomData`; the folder formats as files, which
    workers read."""
    fmt = fmt or detect_format(path)
    if (fmt == 'pyskl') != os.path.isfile(path):
        raise CustomDataError(f'--annotations {path}: --format {fmt} needs {"a file" if fmt == "pyskl" else "a folder"}')
    listed = POSE_FORMATS[fmt].list(path, layout, skip_bad)
    clips, left_out = listed.clips, listed.left_out
    if skip_bad:
        clips = _keep_common_shape(clips, listed.shape_of, path, left_out)
    if not clips:
        raise CustomDataError(f'--annotations {path}: no clips ({fmt})')
    shapes = {listed.shape_of(clip) for clip in clips}
    if len(shapes) > 1:
        raise CustomDataError(f'--annotations {path}: clips differ in joints, channels or confidence: '
                              f'{sorted(shapes)[:3]} (--skip-bad keeps the most common)')
    joints, data_channels, has_score = shapes.pop()
    channels = channels_of(data_channels, has_score, asked_channels, f'--annotations {path}')
    benchmarks = {}
    for clip in clips:
        for benchmark, part in clip.parts.items():
            benchmarks.setdefault(benchmark, set()).add(part)
    for benchmark, parts in benchmarks.items():
        if 'train' not in parts:
            raise CustomDataError(f'--annotations {path}: benchmark {benchmark} has no training clips')
    labels, class_names = [clip.label for clip in clips], listed.class_names
    num_classes = max(max(labels) + 1, len(class_names)) if max(labels) >= 0 or class_names else 0
    ordered = {b: tuple(p for p in PARTS if p in parts) for b, parts in sorted(benchmarks.items())}
    return CustomData(fmt, clips, joints, channels, min(2, listed.persons), ordered, num_classes, class_names,
                      left_out)


def load_clip(clip, fmt, prep):
    """A clip's keypoints, confidence (or ``None``) and its file's own label (or ``None``), read
    from its file where it has one (in a worker); raises for a file that does not fit."""
    return POSE_FORMATS[fmt].load(clip, prep)
