"""Preparing many Kinetics-skeleton files: time and peak memory at two sizes, in one run.

    python benchmarks/prepare_json_memory.py [--files 10000] [--workers 2]

Generates ``--files`` synthetic Kinetics-skeleton files (``feeder.synthetic --format
kinetics-json``), then prepares a quarter of them and all of them, each in a fresh process, and
prints the wall time and the peak resident memory of the main process and of the largest worker.
Memory that stays flat from the quarter to the whole shows that no process holds the dataset.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from feeder.raw.synthetic import ACTIONS  # noqa: E402

# prepare in this child, then report its own peak RSS and its workers' (kB on Linux)
CHILD = ('import json, resource, sys; from feeder.raw import prepare; code = prepare.main(sys.argv[1:]); '
         'print(json.dumps([code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, '
         'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))')


def subset(source, target, n):
    """``target`` holding the first ``n`` files of ``source``'s split folders (as links) and its
    label files."""
    folders = sorted(f for f in os.listdir(source) if os.path.isdir(os.path.join(source, f)))
    files = [(folder, f) for folder in folders for f in sorted(os.listdir(os.path.join(source, folder)))]
    for folder in folders:
        os.makedirs(os.path.join(target, folder))
        label = os.path.join(source, f'{folder}_label.json')
        if os.path.exists(label):
            os.symlink(label, os.path.join(target, f'{folder}_label.json'))
    for folder, f in files[:n]:
        os.symlink(os.path.join(source, folder, f), os.path.join(target, folder, f))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--files', type=int, default=10000)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()
    per_subject = len(ACTIONS) * 3 * 2  # classes x cameras x replications
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, 'kinetics')
        start = time.perf_counter()
        # in a process of its own: a child's peak RSS counts its parent's before exec on Linux
        subprocess.run([sys.executable, '-m', 'feeder.synthetic', '--format', 'kinetics-json', '--out-dir', source,
                        '--subjects', str(math.ceil(args.files / per_subject))], cwd=ROOT, check=True,
                       capture_output=True)
        made = sum(len(fs) for r, _, fs in os.walk(source) if r != source)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(source) for f in fs)
        print(f'generated {made} files ({size / 1e6:.0f} MB of JSON) in {time.perf_counter() - start:.0f} s; '
              f'{os.cpu_count()} cores, {args.workers} workers')
        for n in (args.files // 4, args.files):
            folder = os.path.join(tmp, f'subset{n}')
            subset(source, folder, n)
            start = time.perf_counter()
            out = subprocess.run([sys.executable, '-c', CHILD, '--dataset', 'custom', '--annotations', folder,
                                  '--layout', 'coco17', '--image-size', '1920', '1080', '--out-dir',
                                  os.path.join(tmp, f'out{n}'), '--workers', str(args.workers), '--quiet'],
                                 cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            code, main_kb, worker_kb = json.loads(out.stdout.strip().splitlines()[-1])
            if code:
                raise SystemExit(out.stderr)
            print(f'{n:>6} files: {wall:6.1f} s ({wall / n * 1e3:.2f} ms a file); peak RSS main '
                  f'{main_kb / 1024:.0f} MB, largest worker {worker_kb / 1024:.0f} MB')


if __name__ == '__main__':
    main()
