"""Per-file preparation cost: ours against the published per-file pipeline, in one run.

    python benchmarks/prepare_speed.py [--raw-dir RAW] [--files 40] [--workers 2] [--repeats 3]

Without ``--raw-dir`` it generates synthetic NTU-format files first. Prints ms per file for
parsing and normalising (one core, both implementations on the same files), then the marginal
cost of a file at scale: whole ``feeder.prepare`` runs on the first half of the files and on all
of them, alternated ``--repeats`` times, the fastest of each kept (this kind of shared machine
varies by 20% from one run to the next), their difference divided by the files it adds.
"""
import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from feeder.info import dataset_info  # noqa: E402
from feeder.raw import prepare as prep  # noqa: E402
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
    args = parser.parse_args()
    prep.keep_freed_memory()   # the one-core timings run here: as in the workers

    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw_dir or os.path.join(tmp, 'raw')
        if not args.raw_dir:
            generate(raw, subjects=3, cameras=3, replications=1)
        paths = sorted(os.path.join(root, f) for root, _, files in os.walk(raw)
                       for f in files if f.endswith('.skeleton'))
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
        walls = {half: [], raw: []}
        for _ in range(args.repeats):
            for source in walls:
                out = os.path.join(tmp, 'out')
                start = time.perf_counter()
                summary = prep.prepare(prep.get_args_parser().parse_args(
                    ['--dataset', dataset, '--raw-dir', source, '--out-dir', out, '--workers',
                     str(args.workers), '--skip-bad', '--quiet']))
                walls[source].append(time.perf_counter() - start)
                shutil.rmtree(out)
        first = dataset_info(dataset).benchmarks[0]
        samples = sum(n for key, n in summary['samples'].items() if key.startswith(first))
        added = len(paths) - len(paths) // 2
        marginal = (min(walls[raw]) - min(walls[half])) / added * 1e3
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f'\nwhole runs, {args.workers} workers, fastest of {args.repeats}: {len(paths) // 2} files '
              f'{min(walls[half]):.2f} s, {len(paths)} files {min(walls[raw]):.2f} s ({samples} samples, '
              f'all benchmarks written): {marginal:.2f} ms a file at the margin; '
              f'peak RSS main {peak:.0f} MB, largest worker {child:.0f} MB')

if __name__ == '__main__':
    main()
