"""Print the small-data table from the runs of ``scripts/small_data_table.sh``: per run folder,
1-NN top-1 of the prepared coordinates (raw), a random encoder and the pretrained ones (joint,
motion, bone, fused), the pretrained encoders' linear fused top-1, and the pretraining minutes.

    python scripts/small_data_table.py OUTPUT_ROOT/sbu_fold1 ...
"""
import json
import os
import platform
import sys

import torch

STREAMS = ('joint', 'motion', 'bone', 'fused')


def read(run, name):
    path = os.path.join(run, name, 'results.json')
    if not os.path.isfile(path):
        raise SystemExit(f'error: {path} is missing; run scripts/small_data_table.sh for {run} first')
    with open(path) as f:
        return json.load(f)


def row(run):
    knn = {kind: read(run, f'knn_{kind}') for kind in ('raw', 'random', 'pretrained')}
    linear = read(run, 'linear_pretrained')
    with open(os.path.join(run, 'pretrain_seconds')) as f:
        minutes = int(f.read()) / 60
    first = knn['pretrained']
    cells = [f"{first['dataset'] if first['dataset'] != 'custom' else os.path.basename(run)} {first['benchmark']}"]
    for kind in ('raw', 'random', 'pretrained'):
        cells += [f"{knn[kind]['accuracy'][s]['top1@k=1']:.1f}" for s in STREAMS]
    cells += [f"{linear['accuracy']['fused']['top1']:.1f}", f'{minutes:.1f}']
    return cells


def main(runs):
    header = (['dataset'] + [f'{kind} {s}' for kind in ('raw', 'random', 'CMD') for s in STREAMS]
              + ['CMD linear fused', 'pretrain min'])
    print(f'\n1-NN and linear top-1 (%) on the val part, last epoch; measured on {platform.machine()} CPU '
          f'x{os.cpu_count()}, torch {torch.__version__}\n')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for run in runs:
        print('| ' + ' | '.join(row(run)) + ' |')


if __name__ == '__main__':
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
