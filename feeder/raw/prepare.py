"""Prepare raw NTU RGB+D 60/120, PKU-MMD I/II, NW-UCLA or synthetic skeletons in the community layout.

    python -m feeder.prepare --dataset ntu60 --raw-dir RAW --out-dir OUT [--ignore-list FILE] [--workers N]

writes ``OUT/<benchmark>/{train,val}_data_joint.npy``, ``{train,val}_num_frame.npy`` and
``{train,val}_label.pkl`` for every benchmark of the dataset. Worker processes parse and normalise
files and write straight into memory-mapped outputs, so memory stays flat however large the
dataset. Everything is written under a staging folder and moved into place only when complete.
"""
import argparse
import dataclasses
import json
import os
import pickle
import re
import shutil
import sys
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm

from feeder.info import (CHANNELS, DATASET_NAMES, MAX_FRAMES, PARTS, DatasetInfo, dataset_info,
                         write_dataset_json)
from feeder.layouts import LAYOUTS, get_layout
from feeder.raw.custom import custom_clip, read_custom
from feeder.raw.normalize import fit_frames, mark_missing, normalize_pose_data, normalize_sample, select_bodies
from feeder.raw.readers import (NTU_COLOR, NTU_NAME, DataFormatError, parse_ntu_name, read_ntu_skeleton,
                                read_pku_labels, read_pku_split, read_pku_video, read_ucla_json)
from utils.io import pid_alive, write_atomic, write_text_atomic

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
UCLA_MIN_FRAMES = 2
# xview_dev: a benchmark for choosing settings, carved out of the training views by subject
UCLA_DEV_VAL_SUBJECTS = frozenset([8, 9, 10])

PKU_SPLIT_FILES = {
    'pku1': {'xsub': ('cross_subject.txt', 'cross-subject.txt'), 'xview': ('cross_view.txt', 'cross-view.txt')},
    'pku2': {'xsub': ('cross_subject_v2.txt', 'cross-subject_v2.txt'), 'xview': ('cross_view_v2.txt', 'cross-view_v2.txt')},
}


@dataclass
class Sample:
    name: str
    label: int
    parts: dict                     # benchmark -> 'train' | 'val'
    frames: tuple = ()              # PKU: (start, end) within the video
    rows: dict = field(default_factory=dict)  # (benchmark, part) -> row in that output


@dataclass
class Task:
    """One raw file to read; it yields one sample (NTU, NW-UCLA) or several (a PKU video). A
    custom clip carries its arrays in ``data`` (keypoints, confidence or None, channels)."""
    kind: str
    path: str
    samples: list
    data: tuple = None


class PrepareError(RuntimeError):
    pass


# --------------------------------------------------------------------------- listing raw files

def read_ignore_list(path):
    """Sample names from the official list (with its English header) or from a bare list."""
    with open(path) as f:
        names = set(NTU_NAME.findall(f.read()))
    if not names:
        raise PrepareError(f'--ignore-list {path}: no sample names (SsssCcccPpppRrrrAaaa) found')
    return {'S%sC%sP%sR%sA%s' % groups for groups in names}


def list_ntu(dataset, raw_dir, ignore_list=None):
    """Tasks for NTU-format ``.skeleton`` files anywhere below ``raw_dir``, sorted by name."""
    ignored = read_ignore_list(ignore_list) if ignore_list else set()
    max_setup, max_action = NTU_RANGE[dataset]
    tasks, skipped, seen = [], {}, {}
    for root, _, files in os.walk(raw_dir):
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
                skipped.setdefault(f'not part of {dataset}', []).append(name)
                continue
            parts = {b: 'train' if rule(meta) else 'val' for b, rule in NTU_SPLITS[dataset].items()}
            tasks.append(Task('ntu', path, [Sample(name, meta['action'] - 1, parts)]))
    tasks.sort(key=lambda t: t.samples[0].name)
    return tasks, skipped


def _find_split_file(raw_dir, names):
    for folder in (raw_dir, os.path.join(raw_dir, 'split'), os.path.join(raw_dir, 'Split')):
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    raise PrepareError(f'--raw-dir {raw_dir}: split file {names[0]} not found (looked in RAW and RAW/split)')


def list_pku(dataset, raw_dir):
    """One task per PKU-MMD video, one sample per labelled action instance."""
    skeleton_dir, label_dir = os.path.join(raw_dir, 'skeleton'), os.path.join(raw_dir, 'label')
    for folder in (skeleton_dir, label_dir):
        if not os.path.isdir(folder):
            raise PrepareError(f'--raw-dir {raw_dir}: expected a folder {os.path.basename(folder)}/ '
                               '(PKU-MMD layout: skeleton/<video>.txt, label/<video>.txt)')
    splits = {}
    for benchmark, names in PKU_SPLIT_FILES[dataset].items():
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
    return tasks, skipped


def list_ucla(raw_dir):
    folder = os.path.join(raw_dir, 'all_sqe')
    if not os.path.isdir(folder):
        raise PrepareError(f'--raw-dir {raw_dir}: expected a folder all_sqe/ holding the NW-UCLA json files')
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
    return tasks, skipped


def list_custom(args):
    """Tasks of own pose data, and its description (layout, persons, channels, benchmarks, classes)."""
    if not args.annotations or not args.layout:
        raise PrepareError('--dataset custom needs --annotations FILE and --layout NAME|LAYOUT.json')
    try:
        layout = get_layout(args.layout)
        clips, joints, channels, benchmarks, num_classes, class_names, skipped = read_custom(args.annotations,
                                                                                             args.channels)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if joints != layout.num_joints:
        raise PrepareError(f'--layout {args.layout} has {layout.num_joints} joints, but the clips of '
                           f'{args.annotations} have {joints}')
    persons = min(2, max(keypoint.shape[0] for _, keypoint, *_ in clips))
    name = args.name or os.path.splitext(os.path.basename(os.path.normpath(args.annotations)))[0]
    info = DatasetInfo(name, layout, persons, tuple(benchmarks), num_classes, channels, kind='custom',
                       class_names=class_names, source=os.path.abspath(args.annotations))
    tasks = [Task('custom', clip_name, [Sample(clip_name, label, parts)], (keypoint, score, channels))
             for clip_name, keypoint, score, label, parts in clips]
    return info, tasks, skipped


def list_tasks(args):
    if not os.path.isdir(args.raw_dir):
        raise PrepareError(f'--raw-dir {args.raw_dir}: not a folder')
    if args.dataset in NTU_SPLITS:
        return list_ntu(args.dataset, args.raw_dir, args.ignore_list)
    if args.dataset in PKU_SPLIT_FILES:
        return list_pku(args.dataset, args.raw_dir)
    return list_ucla(args.raw_dir)


# --------------------------------------------------------------------------- worker side

def load_clips(task, persons, layout):
    """Read one task's raw file -> list of (clip (M, T, V, C) float32, true length) per sample
    (custom clips come normalised already)."""
    if task.kind == 'ntu':
        bodies = read_ntu_skeleton(task.path)
        clip = select_bodies(bodies, keep=persons).astype(np.float32)
        return [(clip, clip.shape[1])]
    if task.kind == 'ntu2d':  # the colour-image coordinates, normalised as 2D pose data
        points, _, present = mark_missing(select_bodies(read_ntu_skeleton(task.path, columns=NTU_COLOR), persons))
        clip = normalize_pose_data(points, present, layout)
        return [(clip, clip.shape[1])]
    if task.kind == 'pku':
        video = read_pku_video(task.path)
        return [(video[:, start:end], min(end, video.shape[1]) - start)
                for start, end in (s.frames for s in task.samples)]
    if task.kind == 'custom':
        return [custom_clip(*task.data, persons, layout)]
    _, clip = read_ucla_json(task.path)
    return [(clip, clip.shape[1])]


_OUTPUTS = {}


def _output(path):
    """Per-process cache of the memory-mapped outputs."""
    if path not in _OUTPUTS:
        _OUTPUTS[path] = np.load(path, mmap_mode='r+')
    return _OUTPUTS[path]


def process_task(job):
    """Parse, normalise and write one task.

    Returns one ``(length, None)`` per sample written, or ``(None, (reason, detail))`` for a
    sample left out, so the main process can count and compact.
    """
    task, outputs, layout, persons = job
    try:
        clips = load_clips(task, persons, layout)
    except (DataFormatError, OSError) as e:
        return [(None, ('bad file', str(e)))] * len(task.samples)
    results = []
    for sample, (clip, length) in zip(task.samples, clips):
        needed = UCLA_MIN_FRAMES if task.kind == 'ucla' else 1
        if length < needed:
            results.append((None, ('too short', f'{sample.name} (length {length}, needs {needed})')))
            continue
        if not clip[:, :length].any():
            results.append((None, ('no body', sample.name)))
            continue
        resample = task.kind in ('ucla', 'custom')
        clip = fit_frames(clip, MAX_FRAMES, resample=resample)
        if resample:
            length = min(length, MAX_FRAMES)
        full = np.zeros((persons, MAX_FRAMES) + clip.shape[2:], dtype=np.float32)
        full[:len(clip), :clip.shape[1]] = clip[:persons]
        if task.kind in ('custom', 'ntu2d'):  # normalised already; frames past its end repeat it
            length = min(length, MAX_FRAMES)
            full[:, length:] = full[:, np.arange(length, MAX_FRAMES) % length]
        else:
            normalize_sample(full, layout)
        data = full.transpose(3, 1, 2, 0)
        for key, row in sample.rows.items():
            _output(outputs[key])[row] = data
        results.append((length, None))
    return results


# --------------------------------------------------------------------------- main side

def _compact(path, keep):
    """Rewrite ``path`` with only the rows in ``keep`` (used when files were skipped)."""
    src = np.load(path, mmap_mode='r')
    tmp = path + '.compact'
    dst = np.lib.format.open_memmap(tmp, mode='w+', dtype=src.dtype, shape=(len(keep),) + src.shape[1:])
    for start in range(0, len(keep), 256):
        dst[start:start + 256] = src[keep[start:start + 256]]
    dst.flush()
    del src, dst
    os.replace(tmp, path)


def prepare(args):
    if args.dataset == 'custom':
        info, tasks, skipped = list_custom(args)
        source = args.annotations
        expected = [(b, 'train') for b in info.benchmarks]  # a benchmark may have no val part
    else:
        info = dataset_info(args.dataset)
        tasks, skipped = list_tasks(args)
        if getattr(args, 'coords', '3d') == '2d':
            info = dataclasses.replace(info, channels='xy')
            for task in tasks:
                task.kind = 'ntu2d'
        source = args.raw_dir
        expected = [(b, p) for b in info.benchmarks for p in PARTS]
    layout, persons, benchmarks = info.layout, info.persons, info.benchmarks
    samples = [s for t in tasks for s in t.samples]
    if not samples:
        raise PrepareError(f'--raw-dir {args.raw_dir}: no {args.dataset} samples found')

    counts = {key: 0 for key in expected}
    counts.update({(b, p): 0 for s in samples for b, p in s.parts.items()})
    for sample in samples:
        for benchmark, part in sample.parts.items():
            sample.rows[(benchmark, part)] = counts[(benchmark, part)]
            counts[(benchmark, part)] += 1
    empty = [f'{b}/{p}' for (b, p), n in counts.items() if n == 0]
    if empty:
        raise PrepareError(f'{args.dataset}: no samples for {", ".join(empty)} in {source} '
                           f'({len(samples)} samples found in all)')

    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise PrepareError(f'--out-dir {args.out_dir} is a file, not a folder')
    created = not os.path.exists(args.out_dir)
    os.makedirs(args.out_dir, exist_ok=True)
    remove_stale_staging(args.out_dir)
    staging = os.path.join(args.out_dir, f'.prepare-{os.getpid()}')
    try:
        outputs = {}
        for (benchmark, part), n in counts.items():
            os.makedirs(os.path.join(staging, benchmark), exist_ok=True)
            path = os.path.join(staging, benchmark, f'{part}_data_joint.npy')
            shape = (n, len(info.channels), MAX_FRAMES, layout.num_joints, persons)
            np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=shape).flush()
            outputs[(benchmark, part)] = path

        lengths = {key: np.zeros(n, dtype=np.int64) for key, n in counts.items()}
        dropped = {key: [] for key in counts}
        bad = []
        jobs = [(task, outputs, layout, persons) for task in tasks]
        progress = tqdm(total=len(samples), unit='sample', desc=f'prepare {args.dataset}',
                        disable=args.quiet, file=sys.stdout)
        with _pool(args.workers) as pool_map:
            for task, results in zip(tasks, pool_map(process_task, jobs)):
                for sample, (length, failure) in zip(task.samples, results):
                    if failure is not None:
                        reason, detail = failure
                        if reason == 'bad file':
                            bad.append(detail)
                        skipped.setdefault(reason, []).append(detail)
                    for key, row in sample.rows.items():
                        if failure is None:
                            lengths[key][row] = length
                        else:
                            dropped[key].append(row)
                progress.update(len(results))
        progress.close()
        _OUTPUTS.clear()
        if bad and not args.skip_bad:
            raise PrepareError(f'{len(set(bad))} bad file(s); rerun with --skip-bad to leave them out. '
                               f'First: {sorted(bad)[0]}')

        summary = {'dataset': args.dataset, 'raw_dir': os.path.abspath(source), 'samples': {},
                   'skipped': {k: sorted(set(v)) for k, v in skipped.items()}}
        for (benchmark, part), n in counts.items():
            folder = os.path.join(staging, benchmark)
            keep = np.setdiff1d(np.arange(n), dropped[(benchmark, part)])
            if len(keep) == 0:
                raise PrepareError(f'{args.dataset}: every sample of {benchmark}/{part} was skipped')
            if len(keep) < n:
                _compact(outputs[(benchmark, part)], keep)
            names = [s.name for s in samples if s.rows.get((benchmark, part)) is not None]
            labels = [s.label for s in samples if s.rows.get((benchmark, part)) is not None]
            keep_list = keep.tolist()
            write_atomic(os.path.join(folder, f'{part}_num_frame.npy'),
                         lambda f: np.save(f, lengths[(benchmark, part)][keep]))
            write_atomic(os.path.join(folder, f'{part}_label.pkl'),
                         lambda f: pickle.dump(([names[i] for i in keep_list], [int(labels[i]) for i in keep_list]), f))
            summary['samples'][f'{benchmark}/{part}'] = len(keep)

        for benchmark in benchmarks:
            _replace_dir(os.path.join(staging, benchmark), os.path.join(args.out_dir, benchmark))
        sizes = {b: {p: summary['samples'][f'{b}/{p}'] for p in PARTS if f'{b}/{p}' in summary['samples']}
                 for b in benchmarks}
        write_dataset_json(os.path.join(args.out_dir, 'dataset.json'), dataclasses.replace(info, sizes=sizes))
        write_text_atomic(os.path.join(args.out_dir, 'prepare_summary.json'), json.dumps(summary, indent=1))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not os.listdir(args.out_dir):  # a failed first run leaves no empty folder
            os.rmdir(args.out_dir)
    return summary


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


class _pool:
    """``map`` over worker processes (ordered results, streamed), or in-process for 0 workers."""

    def __init__(self, workers):
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers <= 0:
            return map
        self.pool = get_context('fork').Pool(self.workers)
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
                     help='a pyskl/mmaction2 annotation pickle, or a folder of .npy clips (T, V, C) or (M, T, V, C) '
                          'with optional labels.csv (name,label[,split]) and classes.txt')
    own.add_argument('--layout', default=None, help=f'a built-in layout ({", ".join(LAYOUTS)}) or a JSON file')
    own.add_argument('--channels', default=None, choices=CHANNELS,
                     help='what the last axis holds (default: xyz for 3 numbers, xy for 2); xys: x, y and a '
                          'confidence fed to the encoders too (a keypoint_score always marks missing joints)')
    own.add_argument('--name', default=None, help="the dataset's name (default: the annotation file's)")
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
    print_summary(summary)
    return 0

