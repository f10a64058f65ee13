"""Print a markdown table of every results.json below a folder (kNN and linear, per stream).

    python scripts/results_table.py DEMO/eval
"""
import json
import os
import platform
import sys

import torch

STREAMS = ('joint', 'motion', 'bone', 'fused')


def main(root):
    rows = {}
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder, 'results.json')
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            result = json.load(f)
        name = folder.rsplit('-', 1)[0]
        row = rows.setdefault(name, {})
        for stream, acc in result['accuracy'].items():
            key = 'top1@k=1' if result['protocol'] == 'knn' else 'top1'
            row[(result['protocol'], stream)] = acc[key]
        row['dataset'] = f"{result['dataset']} {result['benchmark']}"
    if not rows:
        raise SystemExit(f'no results.json below {root}')
    columns = [(p, s) for p in ('knn', 'linear') for s in STREAMS]
    header = ['encoder'] + [f'{"1-NN" if p == "knn" else "linear"} {s}' for p, s in columns]
    print(f'\nTop-1 (%) on {next(iter(rows.values()))["dataset"]} val, last epoch; '
          f'measured on {platform.machine()} CPU x{os.cpu_count()}, torch {torch.__version__}\n')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for name, row in rows.items():
        cells = [f'{row[c]:.1f}' if c in row else '-' for c in columns]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'demo/eval')
