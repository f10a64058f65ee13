"""NW-UCLA: the ``all_sqe/`` JSON files of ``--raw-dir``, named ``aNN_sNN_eNN_vNN``; the cross-view
benchmark trains on views 1 and 2, and ``xview_dev`` carves a validation part out of them by
subject for choosing settings (docs/data.md, docs/protocols.md)."""
import os
import re

from feeder.raw.readers import read_ucla_json
from feeder.raw.sources.base import Clip, PrepareError, Sample, Source, Task, builtin_listing

ACTIONS = {a: i for i, a in enumerate((1, 2, 3, 4, 5, 6, 8, 9, 11, 12))}
NAME = re.compile(r'a(\d+)_s(\d+)_e(\d+)_v(\d+)')
DEV_VAL_SUBJECTS = frozenset([8, 9, 10])


def read_ucla(task, prep):
    _, clip = read_ucla_json(task.path)
    return [Clip(clip, clip.shape[1])]


def list_ucla(args):
    folder = os.path.join(args.raw_dir, 'all_sqe')
    if not os.path.isdir(folder):
        raise PrepareError(f'--raw-dir {args.raw_dir}: expected a folder all_sqe/ holding the NW-UCLA json files')
    tasks, skipped = [], {}
    for file in sorted(os.listdir(folder)):
        if not file.endswith('.json'):
            continue
        name = file[:-5]
        match = NAME.fullmatch(name)
        if match is None or int(match.group(1)) not in ACTIONS:
            skipped.setdefault('name not aNN_sNN_eNN_vNN with a known action', []).append(file)
            continue
        action, subject, view = int(match.group(1)), int(match.group(2)), int(match.group(4))
        parts = {'xview': 'train' if view in (1, 2) else 'val'}
        if view in (1, 2):  # the validation benchmark never sees the test view
            parts['xview_dev'] = 'val' if subject in DEV_VAL_SUBJECTS else 'train'
        tasks.append(Task('ucla', os.path.join(folder, file), [Sample(name, ACTIONS[action], parts)]))
    return builtin_listing(args, tasks, skipped)


DATASETS = {'ucla': list_ucla}
READERS = {'ucla': Source(read_ucla, min_frames=2, resample=True)}
