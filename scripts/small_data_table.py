"""Print the small-data table from the runs of ``scripts/small_data_table.sh``: per dataset folder,
one row for the prepared coordinates (raw), one per random encoder (of a method's architecture,
under its protocol) and one per pretrained method,
each with 1-NN top-1 of the joint, motion and bone streams and their fusion, linear top-1 (fused,
or the method's one stream), and the pretraining minutes (the run's epochs, resumes included);
each encoder's fused 1-NN and linear with the coordinates (``--stream all+raw``);
with ``--transfer``, rows of each other dataset's and the pooled encoders; with ``--labels`` runs, a
second table: fine-tuning top-1 at each share of the labels.

    python scripts/small_data_table.py OUTPUT_ROOT/sbu_fold1 ...
"""
import json
import os
import platform
import re
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
    """1-NN per stream (blank where not pretrained), linear top-1 (fused, or the method's one stream)
    and, for an encoder, fused 1-NN and linear with the coordinates (blank where not evaluated so)."""
    knn, linear = read(folder, 'knn')['accuracy'], read(folder, 'linear')['accuracy']
    out = [f"{knn[s]['top1@k=1']:.1f}" if s in knn else '' for s in STREAMS]
    out.append(f"{linear['fused' if 'fused' in linear else next(iter(linear))]['top1']:.1f}")
    with_raw = [os.path.join(folder, name, 'results.json') for name in ('knn_raw', 'linear_raw')]
    if not all(map(os.path.isfile, with_raw)):
        return out + ['', '']
    knn, linear = (read(folder, name)['accuracy']['fused'] for name in ('knn_raw', 'linear_raw'))
    return out + [f"{knn['top1@k=1']:.1f}", f"{linear['top1']:.1f}"]


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
    for entry in entries:  # --transfer: another dataset's encoders, and the pooled ones
        if entry.startswith(('from__', 'pooled__')):
            yield [name, described(entry)] + cells(os.path.join(run, entry)) + ['']


def described(entry):
    """A row's words for a run folder's entry."""
    if entry == 'raw':
        return 'linear head on the raw coordinates'
    if entry.startswith('random_'):
        return f'from scratch ({entry[len("random_"):]}\'s encoder)'
    if entry.startswith('from__'):
        _, source, method = entry.split('__')
        return f'{method}, pretrained on {source}'
    if entry.startswith('pooled__'):
        return f'{entry[len("pooled__"):]}, pretrained on the pool'
    return f'{entry}, pretrained'


def tuned_cell(result):
    """Mean +- sd of a fine-tuning's seeds; one seed has no sd to show."""
    accuracy = result['accuracy']
    if len(result['runs']) == 1:
        return f"{accuracy['top1_mean']:.1f} (1 seed)"
    return f"{accuracy['top1_mean']:.1f} +- {accuracy['top1_std']:.1f}"


def label_table(runs):
    """With ``--labels``: the fractions of the labels, and per evaluated encoder (raw, random,
    pretrained) its fine-tuning top-1 at each, mean +- sd over the seeds; and the seed counts."""
    found = []
    for run in runs:
        for entry in sorted(os.listdir(run)):
            folder = os.path.join(run, entry)
            # the script's folders only (finetune_<fraction>): a user's own beside them are theirs
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            tuned = {float(f[len('finetune_'):]): read(folder, f) for f in names
                     if re.fullmatch(r'finetune_\d*\.?\d+', f)}
            if tuned:
                found.append((os.path.basename(run), entry, tuned))
    fractions = sorted({f for _, _, tuned in found for f in tuned})
    order = {'raw': 0, 'random': 1, 'from': 3, 'pooled': 4}
    table, seeds = [], set()
    for name, entry, tuned in sorted(found, key=lambda e: (e[0], order.get(e[1].split('_')[0], 2), e[1])):
        cells = [tuned_cell(tuned[f]) if f in tuned else '' for f in fractions]
        seeds |= {len(result['runs']) for result in tuned.values()}
        table.append([name, described(entry)] + cells)
    return fractions, table, seeds


def print_table(header, table):
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in table:
        print('| ' + ' | '.join(row) + ' |')


def main(runs):
    header = ['dataset', 'features'] + [f'1-NN {s}' for s in STREAMS] + ['linear', '1-NN fused + raw',
                                                                         'linear fused + raw', 'pretrain min']
    print(f'\n1-NN and linear top-1 (%) on the val part, last epoch; measured on {platform.machine()} CPU '
          f'x{os.cpu_count()}, torch {torch.__version__}\n')
    print_table(header, [row for run in runs for row in rows(run)])
    fractions, table, seeds = label_table(runs)
    if table:
        print(f'\nFine-tuning top-1 (%) on the val part with a share of the training labels, last epoch, mean +- sd '
              f'over {"/".join(map(str, sorted(seeds)))} seeds\n')
        print_table(['dataset', 'features'] + [f'{100 * f:g}% labels' for f in fractions], table)


if __name__ == '__main__':
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
