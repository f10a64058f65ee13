"""NTU RGB+D 60 and 120: ``.skeleton`` files anywhere below ``--raw-dir``, split by the subject,
camera or setup their names give (docs/data.md). ``--coords 2d`` reads their colour-image
coordinates as 2D pose data instead."""
import dataclasses
import os

import numpy as np

from feeder.info import dataset_info
from feeder.raw.normalize import select_bodies
from feeder.raw.pose import custom_clip
from feeder.raw.readers import NTU_COLOR, NTU_NAME, parse_ntu_name, read_ntu_skeleton
from feeder.raw.sources.base import Clip, PrepareError, Sample, Source, Task, builtin_listing, pose_record

NTU60_TRAIN_SUBJECTS = frozenset([1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38])
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | frozenset([
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103])

# benchmark -> "is this sample in the training part?", from the parsed file name
NTU60_SPLITS = {'xsub': lambda m: m['subject'] in NTU60_TRAIN_SUBJECTS, 'xview': lambda m: m['camera'] in (2, 3)}
NTU120_SPLITS = {'xsub': lambda m: m['subject'] in NTU120_TRAIN_SUBJECTS, 'xsetup': lambda m: m['setup'] % 2 == 0}


def read_ntu(task, prep):
    clip = select_bodies(read_ntu_skeleton(task.path), keep=prep.persons).astype(np.float32)
    return [Clip(clip, clip.shape[1])]


def read_ntu_2d(task, prep):
    """The colour-image coordinates of an NTU file, prepared as 2D pose data."""
    return [Clip(*custom_clip(read_ntu_skeleton(task.path, columns=NTU_COLOR), None, prep))]


def read_ignore_list(path):
    """Sample names from the official list (with its English header) or from a bare list."""
    with open(path) as f:
        names = set(NTU_NAME.findall(f.read()))
    if not names:
        raise PrepareError(f'--ignore-list {path}: no sample names (SsssCcccPpppRrrrAaaa) found')
    return {'S%sC%sP%sR%sA%s' % groups for groups in names}


def list_ntu_files(args, splits, max_setup, max_action):
    """Tasks for NTU-format ``.skeleton`` files anywhere below ``--raw-dir``, sorted by name;
    ``splits``: benchmark -> rule on the parsed name; names past ``max_setup`` or ``max_action``
    belong to a larger dataset and are skipped."""
    ignored = read_ignore_list(args.ignore_list) if args.ignore_list else set()
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
            parts = {b: 'train' if rule(meta) else 'val' for b, rule in splits.items()}
            tasks.append(Task(source, path, [Sample(name, meta['action'] - 1, parts)]))
    tasks.sort(key=lambda t: t.samples[0].name)
    info = dataset_info(args.dataset)
    if source == 'ntu2d':
        info = dataclasses.replace(info, channels='xy', preparation=pose_record(args.fill_missing, 'none'))
    return builtin_listing(args, tasks, skipped, info)


DATASETS = {'ntu60': lambda args: list_ntu_files(args, NTU60_SPLITS, max_setup=17, max_action=60),
            'ntu120': lambda args: list_ntu_files(args, NTU120_SPLITS, max_setup=32, max_action=120)}
READERS = {'ntu': Source(read_ntu), 'ntu2d': Source(read_ntu_2d, normalised=True)}
