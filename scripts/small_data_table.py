"""Print the small-data table from the runs of ``scripts/small_data_table.sh``: per dataset folder,
one row for the prepared coordinates (raw), one per random encoder (of a method's architecture,
under its protocol) and one per pretrained method,
each with 1-NN top-1 of the joint, motion and bone streams and their fusion, linear top-1 (fused,
or the method's one stream), and the pretraining minutes (the run's epochs, resumes included).

    python scripts/small_data_table.py OUTPUT_ROOT/sbu_fold1 ...
"""
import json
import os
import platform
import sys

import torch

STREAMS = ('joint', 'motion', 'bone', 'fused')


def read(folder, name):
    path = os.path.join(folder, name, 'results.json')
    if not os.path.isfile(path):
        raise SystemExit(f'error: {path} is missing; run scripts/small_data_table.sh for {os.path.dirname(folder)} '
                         'first')
    with open(path) as f:
        return json.load(f)


def cells(folder):
    """1-NN per stream (blank where not pretrained) and linear top-1 of one evaluated encoder."""
    knn, linear = read(folder, 'knn')['accuracy'], read(folder, 'linear')['accuracy']
    out = [f"{knn[s]['top1@k=1']:.1f}" if s in knn else '' for s in STREAMS]
    return out + [f"{linear['fused' if 'fused' in linear else next(iter(linear))]['top1']:.1f}"]


def rows(run):
    """The rows of one dataset folder: raw, each random encoder, each method."""
    name = os.path.basename(run)
    yield [name, 'raw coordinates'] + cells(os.path.join(run, 'raw')) + ['']
    entries = sorted(os.listdir(run))
    for entry in entries:
        if entry.startswith('random_'):
            with open(os.path.join(run, entry, 'knn', 'results.json')) as f:
                encoder = json.load(f)['encoder']
            yield [name, f'random {encoder["encoder"]} (as {entry[len("random_"):]})'] + \
                cells(os.path.join(run, entry)) + ['']
    for entry in entries:
        log = os.path.join(run, entry, 'pretrain', 'log.txt')
        if os.path.isfile(log):
            with open(log) as f:
                minutes = json.loads(f.read().splitlines()[-1])['minutes']
            with open(os.path.join(run, entry, 'pretrain', 'args.json')) as f:
                encoder = json.load(f)['encoder']
            yield [name, f'{entry} ({encoder})'] + cells(os.path.join(run, entry)) + [f'{minutes:.1f}']


def main(runs):
    header = ['dataset', 'features'] + [f'1-NN {s}' for s in STREAMS] + ['linear', 'pretrain min']
    print(f'\n1-NN and linear top-1 (%) on the val part, last epoch; measured on {platform.machine()} CPU '
          f'x{os.cpu_count()}, torch {torch.__version__}\n')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for run in runs:
        for row in rows(run):
            print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
