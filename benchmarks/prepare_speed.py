"""Per-file preparation cost: ours against the published per-file pipeline, in one run.

    python benchmarks/prepare_speed.py [--raw-dir RAW] [--files 40] [--workers 2] [--repeats 3]
                                       [--against TREE ...]

Without ``--raw-dir`` it generates synthetic NTU-format files first. Prints ms per file for
parsing and normalising (one core, both implementations on the same files), then the marginal
cost of a file at scale: whole ``python -m feeder.prepare`` runs, each in a fresh process, on the
first half of the files and on all of them, alternated ``--repeats`` times, the fastest of each
kept (this kind of shared machine varies by 20% from one run to the next), their difference
divided by the files it adds; the same for the CPU time of a run and its workers, which the
machine's other load disturbs less. ``--against`` times other checkouts of this repository the
same way, alternated with this one (``git worktree add TREE COMMIT``): how one commit compares
with another on the same machine at the same time.
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from feeder.info import dataset_info  # noqa: E402
from feeder.raw.writer import keep_freed_memory  # noqa: E402
from feeder.layouts import NTU25  # noqa: E402
from feeder.raw.normalize import normalize_sample, select_bodies  # noqa: E402
from feeder.raw.readers import read_ntu_skeleton  # noqa: E402
from feeder.raw.synthetic import generate  # noqa: E402
from tests.reference import pre_normalization, read_xyz  # noqa: E402


def ours(path):
    start = time.perf_counter()
    clip = select_bodies(read_ntu_skeleton(path)).astype(np.float32)
    parsed = time.perf_counter()
    full = np.zeros((2, 300, 25, 3), dtype=np.float32)
    full[:, :clip.shape[1]] = clip
    normalize_sample(full, NTU25)
    return parsed - start, time.perf_counter() - parsed


def published(path):
    start = time.perf_counter()
    data = read_xyz(path)
    parsed = time.perf_counter()
    out = np.zeros((1, 3, 300, 25, 2), dtype=np.float32)
    out[0, :, :data.shape[1]] = data
    pre_normalization(out)
    return parsed - start, time.perf_counter() - parsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--raw-dir', help='NTU .skeleton files (default: generate synthetic ones)')
    parser.add_argument('--files', type=int, default=40, help='files timed per implementation')
    parser.add_argument('--workers', type=int, default=os.cpu_count())
    parser.add_argument('--repeats', type=int, default=3, help='whole runs at each size')
    parser.add_argument('--against', nargs='+', default=[], metavar='TREE',
                        help='other checkouts of this repository, timed the same way')
    args = parser.parse_args()
    if args.files < 1 or args.repeats < 1:
        parser.error('--files and --repeats: expected at least 1')
    for tree in args.against:   # checked before the minutes of timing, not after
        if not os.path.isfile(os.path.join(tree, 'feeder', 'prepare.py')):
            parser.error(f'--against {tree}: expected a checkout of this repository (no feeder/prepare.py there)')
    keep_freed_memory()   # the one-core timings run here: as in the workers

    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw_dir or os.path.join(tmp, 'raw')
        if not args.raw_dir:
            generate(raw, subjects=3, cameras=3, replications=1)
        paths = sorted(os.path.join(root, f) for root, _, files in os.walk(raw)
                       for f in files if f.endswith('.skeleton'))
        if len(paths) < 2:
            sys.exit(f'--raw-dir {raw}: expected at least two NTU .skeleton files below it, found {len(paths)}')
        timed = paths[:args.files]
        print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores; '
              f'{len(timed)} files, {np.mean([os.path.getsize(p) for p in timed]) / 1e3:.0f} kB on average')
        rows = []
        for name, fn in (('published per-file pipeline', published), ('feeder.prepare (this repo)', ours)):
            fn(timed[0])
            times = np.array([fn(p) for p in timed]) * 1e3
            rows.append((name, times[:, 0].mean(), times[:, 1].mean(), times.sum(1).mean()))
        print(f'\n{"one core":<30}{"parse ms":>10}{"normalise ms":>14}{"total ms/file":>15}')
        for name, parse, norm, total in rows:
            print(f'{name:<30}{parse:>10.2f}{norm:>14.2f}{total:>15.2f}')
        print(f'speed-up: {rows[0][3] / rows[1][3]:.1f}x per file')

        dataset = 'synthetic' if not args.raw_dir else 'ntu60'
        half = os.path.join(tmp, 'half')
        os.makedirs(half)
        for p in paths[:len(paths) // 2]:
            os.symlink(p, os.path.join(half, os.path.basename(p)))
        trees = list(dict.fromkeys([ROOT] + [os.path.abspath(t) for t in args.against]))
        walls = {(tree, source): [] for tree in trees for source in (half, raw)}
        cpus = {key: [] for key in walls}
        peaks = dict.fromkeys(trees, 0)
        out = os.path.join(tmp, 'out')
        for _ in range(args.repeats):
            for tree, source in walls:
                start = time.perf_counter()
                run = subprocess.Popen([sys.executable, '-m', 'feeder.prepare', '--dataset', dataset, '--raw-dir',
                                        source, '--out-dir', out, '--workers', str(args.workers), '--skip-bad',
                                        '--quiet'], cwd=tree, stdout=subprocess.DEVNULL)
                _, status, usage = os.wait4(run.pid, 0)   # its usage, and its workers': the largest RSS
                walls[tree, source].append(time.perf_counter() - start)
                cpus[tree, source].append(usage.ru_utime + usage.ru_stime)
                run.returncode = os.waitstatus_to_exitcode(status)
                if run.returncode:
                    sys.exit(f'feeder.prepare failed in {tree}')
                peaks[tree] = max(peaks[tree], usage.ru_maxrss / 1024)
                if tree == ROOT and source == raw:
                    written = _samples(out, dataset)
                shutil.rmtree(out)
        added = len(paths) - len(paths) // 2
        print(f'\nwhole runs, {args.workers} workers, fastest of {args.repeats} (this checkout wrote {written} '
              f'samples from {len(paths)} files):')
        for tree in trees:
            fast = min(walls[tree, half]), min(walls[tree, raw])
            cpu = (min(cpus[tree, raw]) - min(cpus[tree, half])) / added * 1e3
            print(f'  {_revision(tree)}: {len(paths) // 2} files {fast[0]:.2f} s, {len(paths)} files {fast[1]:.2f} s, '
                  f'{(fast[1] - fast[0]) / added * 1e3:.2f} ms a file at the margin ({cpu:.2f} ms of CPU, '
                  f'all processes); largest process {peaks[tree]:.0f} MB')


def _samples(out, dataset):
    """Samples written to the first benchmark's parts."""
    first = os.path.join(out, dataset_info(dataset).benchmarks[0])
    return sum(len(np.load(os.path.join(first, name))) for name in os.listdir(first) if name.endswith('_num_frame.npy'))


def _revision(tree):
    found = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=tree, capture_output=True, text=True)
    return found.stdout.strip() or tree


if __name__ == '__main__':
    main()
