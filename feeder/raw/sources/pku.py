"""PKU-MMD I and II: one skeleton file per video under ``skeleton/``, its labelled actions under
``label/``, the split files in ``--raw-dir`` or its ``split/`` folder (docs/data.md). A video is
one task; each of its actions is a sample."""
import os

from feeder.raw.readers import read_pku_labels, read_pku_split, read_pku_video
from feeder.raw.sources.base import Clip, PrepareError, Sample, Source, Task, builtin_listing

SPLIT_FILES = {
    'pku1': {'xsub': ('cross_subject.txt', 'cross-subject.txt'), 'xview': ('cross_view.txt', 'cross-view.txt')},
    'pku2': {'xsub': ('cross_subject_v2.txt', 'cross-subject_v2.txt'), 'xview': ('cross_view_v2.txt', 'cross-view_v2.txt')},
}


def read_pku(task, prep):
    video = read_pku_video(task.path)
    return [Clip(video[:, start:end], min(end, video.shape[1]) - start) for start, end in (s.frames for s in task.samples)]


def find_split_file(raw_dir, names):
    for folder in (raw_dir, os.path.join(raw_dir, 'split'), os.path.join(raw_dir, 'Split')):
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    raise PrepareError(f'--raw-dir {raw_dir}: split file {names[0]} not found (looked in RAW and RAW/split)')


def part_of(video, train, val):
    """A video's part of a benchmark: ``train``, ``val`` (every video not training where the split
    file lists no validation videos) or ``None``."""
    if video in train:
        return 'train'
    return 'val' if val is None or video in val else None


def list_pku(args):
    """One task per PKU-MMD video, one sample per labelled action instance."""
    raw_dir = args.raw_dir
    skeleton_dir, label_dir = os.path.join(raw_dir, 'skeleton'), os.path.join(raw_dir, 'label')
    for folder in (skeleton_dir, label_dir):
        if not os.path.isdir(folder):
            raise PrepareError(f'--raw-dir {raw_dir}: expected a folder {os.path.basename(folder)}/ '
                               '(PKU-MMD layout: skeleton/<video>.txt, label/<video>.txt)')
    splits = {}
    for benchmark, names in SPLIT_FILES[args.dataset].items():
        train, val = read_pku_split(find_split_file(raw_dir, names))
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
        parts = {b: part_of(video, train, val) for b, (train, val) in splits.items()}
        parts = {b: p for b, p in parts.items() if p}
        if not parts:
            skipped.setdefault('video in no split', []).append(video)
            continue
        samples = [Sample(f'{file}_{row}', cls - 1, parts, (start, end))
                   for row, (cls, start, end) in enumerate(read_pku_labels(os.path.join(label_dir, file)))]
        tasks.append(Task('pku', skeleton, samples))
    return builtin_listing(args, tasks, skipped)


DATASETS = {'pku1': list_pku, 'pku2': list_pku}
READERS = {'pku': Source(read_pku)}
