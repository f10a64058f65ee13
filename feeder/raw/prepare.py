"""Prepare raw NTU RGB+D 60/120, PKU-MMD I/II, NW-UCLA, synthetic or own skeletons in the community layout.

    python -m feeder.prepare --dataset ntu60 --raw-dir RAW --out-dir OUT [--ignore-list FILE] [--workers N]
    python -m feeder.prepare --dataset custom --annotations PATH --layout NAME|L.json --out-dir OUT

writes ``OUT/<benchmark>/{train,val}_data_joint.npy``, ``{train,val}_num_frame.npy`` and
``{train,val}_label.pkl`` for every benchmark of the dataset, and ``OUT/dataset.json``. Worker
processes parse and normalise files and write each sample straight into its rows of the
outputs, so memory stays flat however large the dataset. Everything is written under a staging folder and moved
into place only when complete.

The pipeline: a source's lister finds the files (:mod:`feeder.raw.sources`), every sample gets its
rows, 3D pose data settles its turn, the workers read, normalise and write
(:mod:`feeder.raw.writer`), and the lengths, labels and ``dataset.json`` finish the benchmarks.
"""
import argparse
import dataclasses
import json
import os
import pickle
import shutil
import sys

import numpy as np
from tqdm import tqdm

from feeder.info import CHANNELS, DATASET_NAMES, PARTS, write_dataset_json
from feeder.layouts import LAYOUTS
from feeder.raw.custom import FORMATS
from feeder.raw.normalize import AUTO_ALIGN_DEGREES, dataset_rotation, up_spread
from feeder.raw.pose import PosePreparation
from feeder.raw.readers import DataFormatError
from feeder.raw.sources import LISTINGS, NTU_FORMAT
from feeder.raw.sources.base import PrepareError
from feeder.raw.sources.own import survey_clip
from feeder.raw.writer import (allocate, close_outputs, compact, pool, process_task, remove_stale_staging,
                               replace_dir)
from utils.io import WriteError, write_atomic, write_text_atomic

ALIGN_CHOICES = ('auto', 'dataset', 'clip', 'none')
FILL_CHOICES = ('linear', 'zero')


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


def resolve_alignment(listing, prep, workers):
    """``prep`` with the dataset's alignment settled: for ``auto`` and ``dataset`` on 3D pose
    data, the clips' own up directions are surveyed first (docs/data.md, "Your own data")."""
    if listing.info.preparation.get('align') not in ('auto', 'dataset'):
        return prep, listing.info
    with pool(workers) as pool_map:
        axes = [a for a in pool_map(survey_clip, [(t, prep) for t in listing.tasks]) if a is not None]
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
    with pool(args.workers) as pool_map:
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
    close_outputs()
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
            compact(outputs[(benchmark, part)], keep)
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
        replace_dir(os.path.join(staging, benchmark), os.path.join(args.out_dir, benchmark))
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
    if args.ignore_list and args.dataset not in NTU_FORMAT:
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
