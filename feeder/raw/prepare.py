"""Prepare raw NTU RGB+D 60/120, PKU-MMD I/II, NW-UCLA, synthetic or own skeletons in the community layout.

    python -m feeder.prepare --dataset ntu60 --raw-dir RAW --out-dir OUT [--ignore-list FILE] [--workers N]
    python -m feeder.prepare --dataset custom --annotations PATH --layout NAME|L.json --out-dir OUT

writes ``OUT/<benchmark>/{train,val}_data_joint.npy``, ``{train,val}_num_frame.npy`` and
``{train,val}_label.pkl`` for every benchmark of the dataset, and ``OUT/dataset.json``. Worker
processes parse and normalise files and write each sample straight into its rows of the
outputs, so memory stays flat however large the dataset. Everything is written under a staging folder and moved
into place only when complete.

A kind of raw file is a row of ``SOURCES`` (its reader, the frames a clip needs, whether longer
clips are resampled, whether the reader normalises); a dataset is a row of ``LISTINGS`` (the
function that lists its files as tasks).
"""
import argparse
import ctypes
import dataclasses
import json
import os
import pickle
import re
import shutil
import sys
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Callable, NamedTuple

import numpy as np
from tqdm import tqdm

from feeder.info import (CHANNELS, DATASET_NAMES, MAX_FRAMES, PARTS, DatasetInfo, dataset_info,
                         write_dataset_json)
from feeder.layouts import LAYOUTS, get_layout
from feeder.raw.custom import FORMATS, CustomDataError, PosePreparation, clip_axes, custom_clip, list_clips, load_clip
from feeder.raw.normalize import (AUTO_ALIGN_DEGREES, dataset_rotation, fit_frames, normalize_sample,
                                  select_bodies, up_spread)
from feeder.raw.readers import (NTU_COLOR, NTU_NAME, DataFormatError, parse_ntu_name, read_ntu_skeleton,
                                read_pku_labels, read_pku_split, read_pku_video, read_ucla_json)
from utils.io import WriteError, pid_alive, write_atomic, write_error, write_text_atomic

NTU60_TRAIN_SUBJECTS = frozenset([1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38])
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | frozenset([
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103])

# benchmark -> "is this sample in the training part?", from the parsed NTU file name.
NTU_SPLITS = {
    'ntu60': {'xsub': lambda m: m['subject'] in NTU60_TRAIN_SUBJECTS,
              'xview': lambda m: m['camera'] in (2, 3)},
    'ntu120': {'xsub': lambda m: m['subject'] in NTU120_TRAIN_SUBJECTS,
               'xsetup': lambda m: m['setup'] % 2 == 0},
}
NTU_SPLITS['synthetic'] = NTU_SPLITS['ntu60']
NTU_RANGE = {'ntu60': (17, 60), 'ntu120': (32, 120), 'synthetic': (999, 999)}  # max setup, action

UCLA_ACTIONS = {a: i for i, a in enumerate((1, 2, 3, 4, 5, 6, 8, 9, 11, 12))}
UCLA_NAME = re.compile(r'a(\d+)_s(\d+)_e(\d+)_v(\d+)')
# xview_dev: a benchmark for choosing settings, carved out of the training views by subject
UCLA_DEV_VAL_SUBJECTS = frozenset([8, 9, 10])

PKU_SPLIT_FILES = {
    'pku1': {'xsub': ('cross_subject.txt', 'cross-subject.txt'), 'xview': ('cross_view.txt', 'cross-view.txt')},
    'pku2': {'xsub': ('cross_subject_v2.txt', 'cross-subject_v2.txt'), 'xview': ('cross_view_v2.txt', 'cross-view_v2.txt')},
}

ALIGN_CHOICES = ('auto', 'dataset', 'clip', 'none')
FILL_CHOICES = ('linear', 'zero')


@dataclass
class Sample:
    name: str
    label: int
    parts: dict                     # benchmark -> 'train' | 'val'
    frames: tuple = ()              # PKU: (start, end) within the video
    rows: dict = field(default_factory=dict)  # (benchmark, part) -> row in that output


@dataclass
class Task:
    """One raw file to read, of the kind ``source`` (a key of ``SOURCES``); it yields one sample
    (NTU, NW-UCLA, a custom clip) or several (a PKU video). A custom clip read in the main process
    travels in ``clip`` (a :class:`feeder.raw.custom.CustomClip`)."""
    source: str
    path: str
    samples: list
    clip: object = None


class Clip(NamedTuple):
    data: np.ndarray  # (M, T, V, C) float32
    length: int       # the true length
    label: int = None  # a label the file itself gave, where the listing had none


class Outcome(NamedTuple):
    """What became of one sample: written with its stored ``length``, or left out (``reason``)."""
    length: int = None
    reason: str = None
    detail: str = None
    label: int = None


class PrepareError(RuntimeError):
    pass


# --------------------------------------------------------------------------- readers (worker side)

def read_ntu(task, prep):
    clip = select_bodies(read_ntu_skeleton(task.path), keep=prep.persons).astype(np.float32)
    return [Clip(clip, clip.shape[1])]


def read_ntu_2d(task, prep):
    """The colour-image coordinates of an NTU file, prepared as 2D pose data."""
    return [Clip(*custom_clip(read_ntu_skeleton(task.path, columns=NTU_COLOR), None, prep))]


def read_pku(task, prep):
    video = read_pku_video(task.path)
    return [Clip(video[:, start:end], min(end, video.shape[1]) - start) for start, end in (s.frames for s in task.samples)]


def read_ucla(task, prep):
    _, clip = read_ucla_json(task.path)
    return [Clip(clip, clip.shape[1])]


def read_pose(task, prep):
    """A clip of own pose data (``task.clip``, a :class:`feeder.raw.custom.CustomClip`), read
    from its file where it has one; a file's own label must agree with the listing's."""
    keypoint, score, own = load_clip(task.clip, task.source, prep)
    listed = task.samples[0].label
    if own is not None and listed >= 0 and own != listed:
        raise DataFormatError(task.path, None, f'label_index {own}, but the label file says {listed}')
    return [Clip(*custom_clip(keypoint, score, prep), own if listed < 0 else None)]


@dataclass(frozen=True)
class Source:
    """A kind of raw file: ``read(task, prep)`` gives one :class:`Clip` per sample of the task
    (``prep``: a :class:`feeder.raw.custom.PosePreparation`); clips shorter than ``min_frames``
    are left out; longer than ``MAX_FRAMES``, they are resampled (else cut); ``normalised``: the
    reader normalises (pose data), else the NTU steps run here."""
    read: Callable
    min_frames: int = 1
    resample: bool = False
    normalised: bool = False


SOURCES = {
    'ntu': Source(read_ntu),
    'ntu2d': Source(read_ntu_2d, normalised=True),
    'pku': Source(read_pku),
    'ucla': Source(read_ucla, min_frames=2, resample=True),
    **{fmt: Source(read_pose, resample=True, normalised=True) for fmt in FORMATS},
}


# --------------------------------------------------------------------------- listing raw files (main side)

@dataclass
class Listing:
    """What a dataset's lister found: its description, the tasks, what was skipped (reason ->
    names), where it was read from and the (benchmark, part) pairs that must have clips."""
    info: DatasetInfo
    tasks: list
    skipped: dict
    source: str
    expected: list


def read_ignore_list(path):
    """Sample names from the official list (with its English header) or from a bare list."""
    with open(path) as f:
        names = set(NTU_NAME.findall(f.read()))
    if not names:
        raise PrepareError(f'--ignore-list {path}: no sample names (SsssCcccPpppRrrrAaaa) found')
    return {'S%sC%sP%sR%sA%s' % groups for groups in names}


def _builtin_listing(args, tasks, skipped, info=None):
    info = info or dataset_info(args.dataset)
    return Listing(info, tasks, skipped, args.raw_dir, [(b, p) for b in info.benchmarks for p in PARTS])


def list_ntu(args):
    """Tasks for NTU-format ``.skeleton`` files anywhere below ``--raw-dir``, sorted by name."""
    ignored = read_ignore_list(args.ignore_list) if args.ignore_list else set()
    max_setup, max_action = NTU_RANGE[args.dataset]
    source = 'ntu2d' if args.coords == '2d' else 'ntu'
    tasks, skipped, seen = [], {}, {}
    for root, _, files in os.walk(args.raw_dir):
        for file in files:
            if not file.endswith('.skeleton'):
                continue
            name = file[:-len('.skeleton')]
            path = os.path.join(root, file)
            if name in seen:
                raise PrepareError(f'{name} appears twice: {seen[name]} and {path}')
            seen[name] = path
            try:
                meta = parse_ntu_name(name)
            except ValueError:
                skipped.setdefault('name not in NTU format', []).append(path)
                continue
            if name in ignored:
                skipped.setdefault('on the ignore list', []).append(name)
                continue
            if meta['setup'] > max_setup or meta['action'] > max_action:
                skipped.setdefault(f'not part of {args.dataset}', []).append(name)
                continue
            parts = {b: 'train' if rule(meta) else 'val' for b, rule in NTU_SPLITS[args.dataset].items()}
            tasks.append(Task(source, path, [Sample(name, meta['action'] - 1, parts)]))
    tasks.sort(key=lambda t: t.samples[0].name)
    info = dataset_info(args.dataset)
    if source == 'ntu2d':
        info = dataclasses.replace(info, channels='xy', preparation=_pose_record(args.fill_missing, 'none'))
    return _builtin_listing(args, tasks, skipped, info)


def _find_split_file(raw_dir, names):
    for folder in (raw_dir, os.path.join(raw_dir, 'split'), os.path.join(raw_dir, 'Split')):
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    raise PrepareError(f'--raw-dir {raw_dir}: split file {names[0]} not found (looked in RAW and RAW/split)')


def list_pku(args):
    """One task per PKU-MMD video, one sample per labelled action instance."""
    raw_dir = args.raw_dir
    skeleton_dir, label_dir = os.path.join(raw_dir, 'skeleton'), os.path.join(raw_dir, 'label')
    for folder in (skeleton_dir, label_dir):
        if not os.path.isdir(folder):
            raise PrepareError(f'--raw-dir {raw_dir}: expected a folder {os.path.basename(folder)}/ '
                               '(PKU-MMD layout: skeleton/<video>.txt, label/<video>.txt)')
    splits = {}
    for benchmark, names in PKU_SPLIT_FILES[args.dataset].items():
        path = _find_split_file(raw_dir, names)
        train, val = read_pku_split(path)
        splits[benchmark] = (set(train), set(val) if val is not None else None)
    tasks, skipped = [], {}
    for file in sorted(os.listdir(label_dir)):
        if not file.endswith('.txt'):
            continue
        video = file[:-4]
        skeleton = os.path.join(skeleton_dir, file)
        if not os.path.isfile(skeleton):
            skipped.setdefault('label file without skeleton file', []).append(video)
            continue
        parts = {}
        for benchmark, (train, val) in splits.items():
            if video in train:
                parts[benchmark] = 'train'
            elif val is None or video in val:
                parts[benchmark] = 'val'
        if not parts:
            skipped.setdefault('video in no split', []).append(video)
            continue
        samples = [Sample(f'{file}_{row}', cls - 1, parts, (start, end))
                   for row, (cls, start, end) in enumerate(read_pku_labels(os.path.join(label_dir, file)))]
        tasks.append(Task('pku', skeleton, samples))
    return _builtin_listing(args, tasks, skipped)


def list_ucla(args):
    folder = os.path.join(args.raw_dir, 'all_sqe')
    if not os.path.isdir(folder):
        raise PrepareError(f'--raw-dir {args.raw_dir}: expected a folder all_sqe/ holding the NW-UCLA json files')
    tasks, skipped = [], {}
    for file in sorted(os.listdir(folder)):
        if not file.endswith('.json'):
            continue
        name = file[:-5]
        match = UCLA_NAME.fullmatch(name)
        if match is None or int(match.group(1)) not in UCLA_ACTIONS:
            skipped.setdefault('name not aNN_sNN_eNN_vNN with a known action', []).append(file)
            continue
        action, subject, view = int(match.group(1)), int(match.group(2)), int(match.group(4))
        parts = {'xview': 'train' if view in (1, 2) else 'val'}
        if view in (1, 2):  # the validation benchmark never sees the test view
            parts['xview_dev'] = 'val' if subject in UCLA_DEV_VAL_SUBJECTS else 'train'
        tasks.append(Task('ucla', os.path.join(folder, file), [Sample(name, UCLA_ACTIONS[action], parts)]))
    return _builtin_listing(args, tasks, skipped)


def _pose_record(fill, align, **extra):
    return {'align': align, 'fill_missing': fill, **extra}


def list_custom(args):
    """Tasks of own pose data, and its description (layout, persons, channels, benchmarks, classes)."""
    if not args.annotations or not args.layout:
        raise PrepareError('--dataset custom needs --annotations PATH and --layout NAME|LAYOUT.json')
    try:
        layout = get_layout(args.layout)
        data = list_clips(args.annotations, layout, args.format, args.channels, args.skip_bad)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if data.joints != layout.num_joints:
        raise PrepareError(f'--layout {args.layout} has {layout.num_joints} joints, but the clips of '
                           f'{args.annotations} have {data.joints}')
    if args.image_size and data.format not in ('openpose', 'kinetics-json'):
        raise PrepareError(f'--image-size applies to the JSON formats; {args.annotations} is {data.format}')
    name = args.name or os.path.splitext(os.path.basename(os.path.normpath(args.annotations)))[0]
    extra = {'format': data.format}
    if args.image_size:
        extra['image_size'] = list(args.image_size)
    info = DatasetInfo(name, layout, data.persons, tuple(data.benchmarks), data.num_classes, data.channels,
                       kind='custom', class_names=data.class_names, source=os.path.abspath(args.annotations),
                       preparation=_pose_record(args.fill_missing, args.align if data.channels == 'xyz' else 'none',
                                                **extra))
    tasks = [Task(data.format, clip.path or clip.name, [Sample(clip.name, clip.label, clip.parts)], clip)
             for clip in data.clips]
    return Listing(info, tasks, data.left_out, args.annotations, [(b, 'train') for b in info.benchmarks])


LISTINGS = {'ntu60': list_ntu, 'ntu120': list_ntu, 'synthetic': list_ntu, 'pku1': list_pku, 'pku2': list_pku,
            'ucla': list_ucla, 'custom': list_custom}


def list_dataset(args):
    if args.dataset not in LISTINGS:
        raise PrepareError(f'--dataset {args.dataset}: no lister for it; known: {", ".join(LISTINGS)}')
    if args.dataset != 'custom' and not os.path.isdir(args.raw_dir):
        raise PrepareError(f'--raw-dir {args.raw_dir}: not a folder')
    listing = LISTINGS[args.dataset](args)
    if not any(t.samples for t in listing.tasks):
        raise PrepareError(f'{"--annotations" if args.dataset == "custom" else "--raw-dir"} {listing.source}: '
                           f'no {args.dataset} samples found')
    return listing


# --------------------------------------------------------------------------- worker side

_OUTPUTS = {}


class _Output:
    """A prepared array's file, written a row at a time with ``pwrite``: a fresh page costs a
    copy rather than a fault on a memory map (``benchmarks/RESULTS.md``)."""

    def __init__(self, path):
        array = np.load(path, mmap_mode='r')
        self.row_shape, self.offset = array.shape[1:], array.offset
        self.row_bytes = array[0].nbytes if len(array) else 0
        del array
        self.path, self.fd = path, os.open(path, os.O_WRONLY)

    def write(self, row, values):
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.shape != self.row_shape:
            raise ValueError(f'a row of shape {values.shape} for an output of rows {self.row_shape}')
        try:
            os.pwrite(self.fd, values, self.offset + row * self.row_bytes)
        except OSError as e:  # the disk is full, or a file-size limit: said with the file's name
            raise write_error(self.path, e) from None

    def close(self):
        os.close(self.fd)


def _output(path):
    """Per-process cache of the open outputs."""
    if path not in _OUTPUTS:
        _OUTPUTS[path] = _Output(path)
    return _OUTPUTS[path]


def process_task(job):
    """Parse, normalise and write one task; one :class:`Outcome` per sample."""
    task, outputs, prep = job
    source = SOURCES[task.source]
    try:
        clips = source.read(task, prep)
    except (DataFormatError, CustomDataError, OSError) as e:
        return [Outcome(reason='bad file', detail=str(e))] * len(task.samples)
    return [_write_sample(sample, clip, source, outputs, prep) for sample, clip in zip(task.samples, clips)]


def _write_sample(sample, clip, source, outputs, prep):
    data, length = clip.data, clip.length
    if length < source.min_frames:
        return Outcome(reason='too short', detail=f'{sample.name} (length {length}, needs {source.min_frames})')
    if not data[:, :length].any():
        return Outcome(reason='no body', detail=sample.name)
    data = fit_frames(data, MAX_FRAMES, resample=source.resample)
    if source.resample:
        length = min(length, MAX_FRAMES)
    full = np.zeros((prep.persons, MAX_FRAMES) + data.shape[2:], dtype=np.float32)
    full[:len(data), :data.shape[1]] = data[:prep.persons]
    if source.normalised:  # frames past its end repeat it
        length = min(length, MAX_FRAMES)
        full[:, length:] = full[:, np.arange(length, MAX_FRAMES) % length]
    else:
        normalize_sample(full, prep.layout)
    out = np.ascontiguousarray(full.transpose(3, 1, 2, 0))   # once for all the outputs it goes to
    for key, row in sample.rows.items():
        _output(outputs[key]).write(row, out)
    return Outcome(length=length, label=clip.label)


def survey_task(job):
    """A custom 3D clip's own (up, across) directions, for the dataset's turn; ``None`` where it
    has none."""
    task, prep = job
    try:
        keypoint, score, _ = load_clip(task.clip, task.source, prep)
    except (DataFormatError, CustomDataError, OSError):  # reported when the clip is prepared
        return None
    up, across = clip_axes(keypoint, score, prep)
    return None if up is None else (up, across)


# --------------------------------------------------------------------------- main side

def assign_rows(listing):
    """Give every sample its row in each output it belongs to; returns {(benchmark, part): rows}."""
    counts = {key: 0 for key in listing.expected}
    for task in listing.tasks:
        for sample in task.samples:
            for key in sample.parts.items():
                sample.rows[key] = counts.get(key, 0)
                counts[key] = counts.get(key, 0) + 1
    empty = [f'{b}/{p}' for (b, p), n in counts.items() if n == 0]
    if empty:
        total = sum(len(t.samples) for t in listing.tasks)
        raise PrepareError(f'{listing.info.name}: no samples for {", ".join(empty)} in {listing.source} '
                           f'({total} samples found in all)')
    return counts


def allocate(staging, info, counts):
    """The output arrays, zero-filled: {(benchmark, part): path}."""
    outputs = {}
    for (benchmark, part), n in counts.items():
        os.makedirs(os.path.join(staging, benchmark), exist_ok=True)
        path = os.path.join(staging, benchmark, f'{part}_data_joint.npy')
        shape = (n, len(info.channels), MAX_FRAMES, info.layout.num_joints, info.persons)
        try:
            np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=shape).flush()
        except OSError as e:
            raise write_error(path, e) from None
        outputs[(benchmark, part)] = path
    return outputs


def resolve_alignment(listing, prep, workers):
    """``prep`` with the dataset's alignment settled: for ``auto`` and ``dataset`` on 3D pose
    data, the clips' own up directions are surveyed first (docs/data.md, "Your own data")."""
    if listing.info.preparation.get('align') not in ('auto', 'dataset'):
        return prep, listing.info
    with _pool(workers) as pool_map:
        axes = [a for a in pool_map(survey_task, [(t, prep) for t in listing.tasks]) if a is not None]
    if not axes:
        return dataclasses.replace(prep, align='none'), _with_preparation(listing.info, align='none')
    ups, acrosses = zip(*axes)
    spread = up_spread(ups)
    align = listing.info.preparation['align']
    if align == 'auto':
        align = 'dataset' if spread <= AUTO_ALIGN_DEGREES else 'clip'
        print(f'--align auto: 90% of the clips\' up directions lie within {spread:.1f} degrees of their mean '
              f'(threshold {AUTO_ALIGN_DEGREES:g}): --align {align}')
    rotation = dataset_rotation(ups, acrosses) if align == 'dataset' else None
    info = _with_preparation(listing.info, align=align, requested=listing.info.preparation['align'],
                             up_spread_degrees=round(spread, 2),
                             rotation=None if rotation is None else np.round(rotation, 6).tolist())
    return dataclasses.replace(prep, align=align, rotation=rotation), info


def _with_preparation(info, **changes):
    return dataclasses.replace(info, preparation={**info.preparation, **changes})


def run_tasks(listing, outputs, counts, prep, args):
    """Every task through the workers; returns the stored lengths and the rows left out per output,
    and the left-out files."""
    lengths = {key: np.zeros(n, dtype=np.int64) for key, n in counts.items()}
    dropped = {key: [] for key in counts}
    bad = []
    total = sum(len(t.samples) for t in listing.tasks)
    progress = tqdm(total=total, unit='sample', desc=f'prepare {args.dataset}', disable=args.quiet, file=sys.stdout)
    with _pool(args.workers) as pool_map:
        for task, outcomes in zip(listing.tasks, pool_map(process_task, [(t, outputs, prep) for t in listing.tasks])):
            for sample, outcome in zip(task.samples, outcomes):
                if outcome.label is not None:
                    sample.label = outcome.label
                if outcome.reason is not None:
                    if outcome.reason == 'bad file':
                        bad.append(outcome.detail)
                    listing.skipped.setdefault(outcome.reason, []).append(outcome.detail)
                for key, row in sample.rows.items():
                    if outcome.reason is None:
                        lengths[key][row] = outcome.length
                    else:
                        dropped[key].append(row)
            progress.update(len(outcomes))
    progress.close()
    for output in _OUTPUTS.values():
        output.close()
    _OUTPUTS.clear()
    if bad and not args.skip_bad:
        raise PrepareError(f'{len(set(bad))} bad file(s); rerun with --skip-bad to leave them out. '
                           f'First: {sorted(bad)[0]}')
    return lengths, dropped


def length_statistics(lengths):
    """What recipes read of a part's clip lengths (stored frames)."""
    return {'min': int(lengths.min()), 'median': float(np.median(lengths)), 'mean': round(float(lengths.mean()), 2),
            'max': int(lengths.max())}


def finish(listing, staging, outputs, counts, lengths, dropped, info, args):
    """Compact away the rows left out, write the lengths, labels, ``dataset.json`` and the
    summary, and move the benchmarks into place."""
    samples = [s for t in listing.tasks for s in t.samples]
    if info.kind == 'custom':  # labels the files themselves gave (Kinetics-skeleton) count too
        info = dataclasses.replace(info, num_classes=max(info.num_classes, max(s.label for s in samples) + 1))
    summary = {'dataset': args.dataset, 'raw_dir': os.path.abspath(listing.source), 'samples': {},
               'skipped': {k: sorted(set(v)) for k, v in listing.skipped.items()}}
    stats = {}
    for (benchmark, part), n in counts.items():
        keep = np.setdiff1d(np.arange(n), dropped[(benchmark, part)])
        if len(keep) == 0:
            raise PrepareError(f'{args.dataset}: every sample of {benchmark}/{part} was skipped')
        if len(keep) < n:
            _compact(outputs[(benchmark, part)], keep)
        members = [s for s in samples if (benchmark, part) in s.rows]
        names = [members[i].name for i in keep]
        labels = [int(members[i].label) for i in keep]
        kept_lengths = lengths[(benchmark, part)][keep]
        folder = os.path.join(staging, benchmark)
        write_atomic(os.path.join(folder, f'{part}_num_frame.npy'), lambda f: np.save(f, kept_lengths))
        write_atomic(os.path.join(folder, f'{part}_label.pkl'), lambda f: pickle.dump((names, labels), f))
        summary['samples'][f'{benchmark}/{part}'] = len(keep)
        stats.setdefault(benchmark, {})[part] = length_statistics(kept_lengths)

    sizes = {b: {p: summary['samples'][f'{b}/{p}'] for p in PARTS if f'{b}/{p}' in summary['samples']}
             for b in info.benchmarks}
    # every file is written before anything is moved: a full disk stops the run with the old output whole
    write_dataset_json(os.path.join(staging, 'dataset.json'), dataclasses.replace(info, sizes=sizes, lengths=stats))
    write_text_atomic(os.path.join(staging, 'prepare_summary.json'), json.dumps(summary, indent=1))
    for benchmark in info.benchmarks:
        _replace_dir(os.path.join(staging, benchmark), os.path.join(args.out_dir, benchmark))
    for name in ('dataset.json', 'prepare_summary.json'):
        os.replace(os.path.join(staging, name), os.path.join(args.out_dir, name))
    return summary


def prepare(args):
    listing = list_dataset(args)
    info = listing.info
    counts = assign_rows(listing)
    prep = PosePreparation(info.channels, info.persons, info.layout, fill=info.preparation.get('fill_missing', 'zero'),
                           align=info.preparation.get('align', 'none'), image_size=getattr(args, 'image_size', None))
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise PrepareError(f'--out-dir {args.out_dir} is a file, not a folder')
    created = not os.path.exists(args.out_dir)
    os.makedirs(args.out_dir, exist_ok=True)
    remove_stale_staging(args.out_dir)
    staging = os.path.join(args.out_dir, f'.prepare-{os.getpid()}')
    try:
        prep, info = resolve_alignment(listing, prep, args.workers)
        outputs = allocate(staging, info, counts)
        lengths, dropped = run_tasks(listing, outputs, counts, prep, args)
        return finish(listing, staging, outputs, counts, lengths, dropped, info, args)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not os.listdir(args.out_dir):  # a failed first run leaves no empty folder
            os.rmdir(args.out_dir)


def _compact(path, keep):
    """Rewrite ``path`` with only the rows in ``keep`` (used when files were skipped)."""
    src = np.load(path, mmap_mode='r')
    tmp = path + '.compact'
    try:
        dst = np.lib.format.open_memmap(tmp, mode='w+', dtype=src.dtype, shape=(len(keep),) + src.shape[1:])
        for start in range(0, len(keep), 256):
            dst[start:start + 256] = src[keep[start:start + 256]]
        dst.flush()
    except OSError as e:
        raise write_error(path, e) from None
    del src, dst
    os.replace(tmp, path)


def remove_stale_staging(out_dir):
    """Delete the staging folders (``.prepare-PID``) and replaced benchmarks (``NAME.old-PID``)
    that a killed run left behind."""
    for name in os.listdir(out_dir):
        match = re.fullmatch(r'\.prepare-(\d+)|.+\.old-(\d+)', name)
        if match and not pid_alive(int(match.group(1) or match.group(2))):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def _replace_dir(src, dst):
    """Move a finished benchmark folder into place, replacing an older one."""
    old = None
    if os.path.exists(dst):
        old = f'{dst}.old-{os.getpid()}'
        os.replace(dst, old)
    os.replace(src, dst)
    if old:
        shutil.rmtree(old)


def keep_freed_memory():
    """Let this process keep the memory it frees (glibc only; elsewhere a no-op).

    By default glibc hands every large block back to the system when it is freed, and the next
    file's arrays of the same size then take fresh pages, each one faulted in and zeroed: nearly
    half the cost of parsing a file by array operations here (``benchmarks/RESULTS.md``). A
    worker allocates the same sizes file after file, so it keeps them instead.
    """
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return
    # M_MMAP_THRESHOLD: blocks up to 32 MB (glibc's maximum) come from the heap; M_TRIM_THRESHOLD:
    # free memory at the heap's top is kept up to 256 MB
    mallopt(-3, 32 << 20)
    mallopt(-1, 256 << 20)


class _pool:
    """``map`` over worker processes (ordered results, streamed), or in-process for 0 workers."""

    def __init__(self, workers):
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers <= 0:
            return map
        self.pool = get_context('fork').Pool(self.workers, initializer=keep_freed_memory)
        return lambda fn, jobs: self.pool.imap(fn, jobs, chunksize=4)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()


def print_summary(summary, file=None):
    file = file or sys.stdout
    print(f"\nPrepared {summary['dataset']} from {summary['raw_dir']}", file=file)
    for key, n in summary['samples'].items():
        print(f'  {key:<14} {n:>7} samples', file=file)
    for reason, names in summary['skipped'].items():
        shown = ', '.join(names[:5]) + (' ...' if len(names) > 5 else '')
        print(f'  skipped, {reason}: {len(names)} ({shown})', file=file)


def get_args_parser():
    parser = argparse.ArgumentParser('Prepare raw skeleton datasets', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', required=True, choices=DATASET_NAMES)
    parser.add_argument('--raw-dir', default=None, help='folder with the raw files (the built-in datasets)')
    parser.add_argument('--out-dir', required=True, help='writes OUT/<benchmark>/... and OUT/dataset.json')
    own = parser.add_argument_group('own data (--dataset custom; docs/data.md, "Your own data")')
    own.add_argument('--annotations', default=None,
                     help='a pyskl/mmaction2 annotation pickle; or a folder of .npy clips (T, V, C) or (M, T, V, C), '
                          'of OpenPose video folders (per-frame *_<frame>_keypoints.json), or of Kinetics-skeleton '
                          'files (directly or in split folders such as kinetics_train/); folders may hold '
                          'labels.csv (name,label[,split]) and classes.txt')
    own.add_argument('--format', default=None, choices=FORMATS,
                     help='what --annotations holds (default: found from its content)')
    own.add_argument('--image-size', type=float, nargs=2, default=None, metavar=('W', 'H'),
                     help='JSON coordinates normalised by the image size: multiplied back by W and H '
                          '(Kinetics-skeleton as st-gcn made it: 340 256); default: taken as they are')
    own.add_argument('--layout', default=None, help=f'a built-in layout ({", ".join(LAYOUTS)}) or a JSON file')
    own.add_argument('--channels', default=None, choices=CHANNELS,
                     help='what the last axis holds (default: xyz for 3 numbers, xy for 2); xys: x, y and a '
                          'confidence fed to the encoders too (a keypoint_score always marks missing joints)')
    own.add_argument('--name', default=None, help="the dataset's name (default: the annotation file's)")
    own.add_argument('--align', default='auto', choices=ALIGN_CHOICES,
                     help='3D: dataset, one turn for all clips (a fixed camera); clip, each clip turned into its own '
                          'frame, up on +z and across on +x (many viewpoints); none, the data\'s own axes; auto (the '
                          f'default): dataset where 90%% of the clips\' up directions lie within {AUTO_ALIGN_DEGREES:g} '
                          'degrees of their mean, else clip. 2D has no turn')
    own.add_argument('--fill-missing', default='linear', choices=FILL_CHOICES,
                     help='a missed joint: linear, filled along time from its detections (the default); zero, left '
                          'at zero. Either way its confidence stays 0')
    parser.add_argument('--coords', default='3d', choices=['3d', '2d'],
                        help='NTU RGB+D: 3d, the camera-space x, y, z; or 2d, the colour-image coordinates (colorX, '
                             'colorY) normalised as 2D pose data')
    parser.add_argument('--ignore-list', default=None,
                        help='NTU: file listing samples to leave out (official list or bare names)')
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='worker processes (0: all in this process)')
    parser.add_argument('--skip-bad', action='store_true',
                        help='leave out malformed files (listed in the summary) instead of stopping')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.coords == '2d' and args.dataset not in ('ntu60', 'ntu120'):
        print(f'--coords 2d reads the colour coordinates of NTU RGB+D files, not {args.dataset}', file=sys.stderr)
        return 2
    if args.dataset != 'custom' and args.raw_dir is None:
        print(f'--dataset {args.dataset} needs --raw-dir', file=sys.stderr)
        return 2
    if args.dataset != 'custom' and (args.format or args.image_size):
        print(f'--format and --image-size apply to --dataset custom, not {args.dataset}', file=sys.stderr)
        return 2
    if args.ignore_list and args.dataset not in NTU_SPLITS:
        print(f'--ignore-list applies to NTU-format datasets, not {args.dataset}', file=sys.stderr)
        return 2
    if args.ignore_list and not os.path.isfile(args.ignore_list):
        print(f'--ignore-list {args.ignore_list}: no such file', file=sys.stderr)
        return 2
    try:
        summary = prepare(args)
    except (PrepareError, DataFormatError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except WriteError as e:
        print(f'error: {e}; the output in {args.out_dir} is as it was before this run', file=sys.stderr)
        return 1
    print_summary(summary)
    return 0
