"""A run killed with SIGKILL at random moments and continued with ``--auto-resume`` ends where the
run that was never killed ends, bit for bit (docs/pretraining.md, "What a run survives").

    python benchmarks/kill_resume.py --kills 20 [--epochs 20] [--seed 0]

On the synthetic dataset, a small CMD run is trained once without interruption, and the times
its checkpoints appear are noted. Then, N times, the same run is started, killed with SIGKILL
after a random time, and continued with ``--auto-resume`` (killed again at a random time with
probability one half, up to three kills a trial) until it completes. Four kills in five fall
while the uninterrupted run was training (mid-step, mid-epoch, mid-checkpoint-write), the rest
anywhere in its length (start-up, the end). Each trial's ``checkpoint.pth`` (model with its queues, optimizer,
scaler, epoch, RNG state) and ``log.txt`` (every line, every value but the timing) must equal the
uninterrupted run's. Prints one line per trial, then ``K of N kills resumed exactly``.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

# Log values that measure the machine, not the run.
TIMING_KEYS = ('samples_per_s', 'minutes')
# Arguments that name the run's own files, not what it computed.
RUN_ARGS = ('resume', 'auto_resume', 'output_dir')


def pretrain_command(data_root, out, epochs, *extra):
    return [sys.executable, os.path.join(ROOT, 'pretrain.py'), '--dataset', 'synthetic', '--data-root', str(data_root),
            '--output-dir', str(out), '--epochs', str(epochs), '--hidden-size', '16', '--num-layers', '2',
            '--frames', '16', '--min-crop', '8', '--batch-size', '8', '--queue-size', '32', '--topk', '16',
            '--workers', '0', '--device', 'cpu', '--quiet', '--seed', '7', '--knn-every', '2', '--save-every', '2',
            '--auto-resume', *extra]


def differences(expected_dir, got_dir):
    """What differs between two finished runs' ``checkpoint.pth`` and ``log.txt``: a list of
    sentences, empty when the runs are the same."""
    out = []
    a = torch.load(os.path.join(expected_dir, 'checkpoint.pth'), weights_only=True)
    b = torch.load(os.path.join(got_dir, 'checkpoint.pth'), weights_only=True)
    for part in ('model', 'optimizer', 'scaler', 'epoch', 'rng'):
        out += [f'checkpoint {part}: {d}' for d in _tree_differences(a[part], b[part])]
    args_a, args_b = (_run_args_left_out(c['args']) for c in (a, b))
    out += [f'checkpoint args: {d}' for d in _tree_differences(args_a, args_b)]
    logs = [_log(os.path.join(d, 'log.txt')) for d in (expected_dir, got_dir)]
    if [r['epoch'] for r in logs[0]] != [r['epoch'] for r in logs[1]]:
        out.append(f'log epochs {[r["epoch"] for r in logs[1]]}, expected {[r["epoch"] for r in logs[0]]}')
    else:
        for ra, rb in zip(*logs):
            changed = sorted(k for k in set(ra) | set(rb) if k not in TIMING_KEYS and ra.get(k) != rb.get(k))
            if changed:
                out.append(f'log epoch {ra["epoch"]}: {", ".join(changed)} differ')
    return out


def _run_args_left_out(args):
    """A checkpoint's args and their sources without those that say how the run was started."""
    kept = {k: v for k, v in args.items() if k not in RUN_ARGS}
    if isinstance(kept.get('sources'), dict):
        kept['sources'] = {k: v for k, v in kept['sources'].items() if k not in RUN_ARGS}
    return kept


def _log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _tree_differences(a, b, where=''):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f'{where or "top"}: keys {sorted(set(a) ^ set(b), key=str)} in one only']
        return [d for k in a for d in _tree_differences(a[k], b[k], f'{where}.{k}' if where else str(k))]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f'{where}: lengths {len(a)} and {len(b)}']
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _tree_differences(x, y, f'{where}[{i}]')]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) else [f'{where} differs']
    return [] if a == b else [f'{where}: {a!r} != {b!r}']


def run_killed(command, after, out, epochs):
    """Start ``command`` and SIGKILL it after ``after`` seconds unless it ends first; returns
    where the kill came (None if the run ended first), read off the files it left in ``out``."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        if not os.path.isdir(out) or not os.path.exists(os.path.join(out, 'args.json')):
            return 'in start-up'
        if any('.tmp' in name for name in os.listdir(out)):
            return 'in a checkpoint or log write'
        epoch = torch.load(os.path.join(out, 'checkpoint.pth'), weights_only=True)['epoch'] \
            if os.path.exists(os.path.join(out, 'checkpoint.pth')) else 0
        return f'in epoch {epoch}' if epoch < epochs else 'after the last epoch'
    if process.returncode:
        raise RuntimeError(f'the run failed: {process.stderr.read().decode()[-2000:]}')
    return None


def timed_run(command, out):
    """Run ``command`` to the end; returns its length and the times its checkpoints appeared."""
    latest, seen, start = os.path.join(out, 'checkpoint.pth'), [], time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stamp = None
    while process.poll() is None:
        now = os.stat(latest).st_mtime_ns if os.path.exists(latest) else None
        if now != stamp:
            stamp = now
            seen.append(time.perf_counter() - start)
        time.sleep(0.01)
    if process.returncode:
        raise RuntimeError(f'the run failed: {process.stderr.read().decode()[-2000:]}')
    return time.perf_counter() - start, seen


def make_data(folder):
    from feeder.raw import prepare as prep
    from feeder.raw.synthetic import generate
    generate(os.path.join(folder, 'raw'), classes=4, subjects=3, cameras=2, replications=1, seed=0)
    prep.prepare(prep.get_args_parser().parse_args(['--dataset', 'synthetic', '--raw-dir', os.path.join(folder, 'raw'),
                                                    '--out-dir', os.path.join(folder, 'data'), '--workers', '0',
                                                    '--quiet']))
    return os.path.join(folder, 'data')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kills', type=int, default=10, help='trials, each killed at least once')
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0, help='of the kill times')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix='kill_resume_')
    try:
        data = make_data(work)
        expected = os.path.join(work, 'expected')
        length, seen = timed_run(pretrain_command(data, expected, args.epochs), expected)
        epoch = (seen[-1] - seen[0]) / max(1, len(seen) - 1)
        training = (max(0.0, seen[0] - epoch), seen[-1])
        print(f'uninterrupted run: {args.epochs} epochs in {length:.1f} s, training from about {training[0]:.1f} s '
              f'to {training[1]:.1f} s')

        def kill_time():
            low, high = training if rng.random() < 0.8 else (0.0, length)
            return round(rng.uniform(low, high), 2)
        exact, kinds = 0, {}
        for trial in range(args.kills):
            out = os.path.join(work, f'trial{trial}')
            times, killed = [], [None]
            while killed[0] is None:  # a run that ended before its kill is no trial: start it again
                shutil.rmtree(out, ignore_errors=True)
                times = [kill_time()]
                killed = [run_killed(pretrain_command(data, out, args.epochs), times[0], out, args.epochs)]
            while killed[-1] is not None:
                again = len(times) < 3 and rng.random() < 0.5
                times.append(kill_time() if again else 3600)
                killed.append(run_killed(pretrain_command(data, out, args.epochs), times[-1], out, args.epochs))
            for kind in filter(None, killed):
                kind = 'in an epoch' if kind.startswith('in epoch') else kind
                kinds[kind] = kinds.get(kind, 0) + 1
            found = differences(expected, out)
            exact += not found
            said = ', '.join(f'{t} s ({k})' for t, k in zip(times, killed) if k)
            print(f'trial {trial}: killed at {said}: ' + ('resumed exactly' if not found else '; '.join(found[:5])))
            shutil.rmtree(out)
        print(f'kills: {sum(kinds.values())} in {args.kills} trials: ' + ', '.join(f'{n} {k}' for k, n in kinds.items()))
        print(f'{exact} of {args.kills} kills resumed exactly')
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
