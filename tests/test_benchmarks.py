"""Every benchmark script runs at its smallest size on the CPU and prints the figures it promises
(its header and at least one row); one that needs CUDA says so in one line. A script added to
``benchmarks/`` without a row here fails ``test_every_benchmark_script_has_a_run``."""
import os
import re
import subprocess
import sys

import pytest

from tests.video_sample import estimator_installed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, 'benchmarks')

# script: (arguments at the smallest size, what its output must hold: one pattern per line promised)
RUNS = {
    'knn_speed.py': (['--train', '300', '--test', '100', '--dim', '16', '--device', 'cpu'],
                     [r'implementation\s+seconds', r'ours \(torch, chunked\)\s+\d', r'k=1: predictions agree']),
    'prepare_json_memory.py': (['--files', '8', '--workers', '1'],
                               [r'generated \d+ files', r'8 files:\s+[\d.]+ s .*peak RSS']),
    'prepare_speed.py': (['--files', '4', '--workers', '1', '--repeats', '1'],
                         [r'feeder.prepare \(this repo\)\s+[\d.]+', r'speed-up: [\d.]+x per file',
                          r'files [\d.]+ s, \d+ files [\d.]+ s']),
    'pretrain_speed.py': (['--device', 'cpu', '--config', 'ci', '--variants', 'fused', '--steps', '1', '--warmup', '0',
                           '--workers', '0', '--knn-size', '200', '200', '16', '--monitor-size', '64', '32'],
                          [r'config\s+variant\s+batch\s+samples/s', r'ci\s+fused\s+32\s+[\d.]+',
                           r'kNN monitor \(64 \+ 32 clips', r'data pipeline \(0 workers.*views made in the workers '
                           r'[\d.]+ pairs/s, on the cpu per batch [\d.]+ pairs/s', r'checkpoint of an epoch']),
    'self_check.py': (['--runs', ' --gru-impl grouped --hidden-size 16'],
                      [r'device: CPU', r'--gru-impl grouped --hidden-size 16: self-check of the fast path passed']),
    'kill_resume.py': (['--kills', '1', '--epochs', '2'], [r'trial 0: killed at', r'1 of 1 kills resumed exactly']),
    'timeline_speed.py': (['--frames', '200', '--threads', '1'],
                          [r'offline: 200 frames, \d+ tracks; read and tracked', r'live at 30 frames/s: 200 frames']),
    'timeline_settings.py': (['--subjects', '3'],
                             [r'window threshold min_duration mAP@', r'^64 0\.6 64 [\d. ]+$']),
    'method_speed.py': (['--batch', '4', '--frames', '20', '--width', '4', '--queue', '64', '--mamp-frames', '16',
                         '--mamp-width', '32', '--mamp-depth', '2', '--steps', '1', '--rounds', '1'],
                        [r'method\s+published ms\s+ours ms\s+ours/published'] +
                        # the float64 loss gap: 0, or float rounding (summation order differs between machines)
                        [rf'^{m}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(0|\d(\.\d)?e-(1[3-9]|[2-9]\d))$'
                         for m in ('skeletonclr', 'crossclr', 'aimclr', 'mamp')]),
    'video_speed.py': (['--videos', '4', '--frames', '16', '--size', '320', '240', '--window', '16', '--workers', '2'],
                       [r'^stage\s+frames/s$', r'^decode \(OpenCV, one process\)\s+[\d.]+$',
                        r'^feeder.video, 2 workers \(decode, estimate, write\)\s+[\d.]+$',
                        r'^timeline.py --video \(estimate, track, score\)\s+[\d.]+$', r'\d+% estimation\)$']),
    # needs CUDA: says so in one line
    'recurrence_speed.py': ([], [r'^recurrence_speed.py times CUDA kernels; no CUDA device is available$']),
}
NEEDS_CUDA = {'recurrence_speed.py'}
NEEDS_ESTIMATOR = {'video_speed.py'}  # requirements-video.txt
NOT_SCRIPTS = {'published_steps.py'}  # a module method_speed.py imports


def run(command, **kwargs):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def check(done, patterns, expect_ok=True):
    out = done.stdout + done.stderr
    assert (done.returncode == 0) == expect_ok, out[-3000:]
    for pattern in patterns:
        assert re.search(pattern, out, re.MULTILINE), f'{pattern!r} not in:\n{out[-3000:]}'


def test_every_benchmark_script_has_a_run():
    scripts = {f for f in os.listdir(BENCHMARKS) if f.endswith('.py')} - NOT_SCRIPTS
    assert scripts == set(RUNS) | {'preparation_floor.py'}


@pytest.mark.parametrize('script', sorted(RUNS))
def test_the_benchmark_runs_at_its_smallest_size(script):
    if script in NEEDS_ESTIMATOR and not estimator_installed():
        pytest.skip('mediapipe is not installed (requirements-video.txt)')
    arguments, patterns = RUNS[script]
    done = run([sys.executable, os.path.join('benchmarks', script), *arguments],
               env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    check(done, patterns, expect_ok=script not in NEEDS_CUDA)


def test_preparation_floor_on_data_prepared_here(tmp_path):
    source, data = tmp_path / 'src', tmp_path / 'data'
    run([sys.executable, '-m', 'feeder.synthetic', '--format', 'openpose', '--out-dir', str(source), '--subjects', '3',
         '--classes', '3', '--replications', '1', '--setups', '1', '--cameras', '2'], check=True)
    run([sys.executable, '-m', 'feeder.prepare', '--dataset', 'custom', '--annotations', str(source), '--layout',
         'coco17', '--out-dir', str(data), '--quiet'], check=True)
    done = run([sys.executable, 'benchmarks/preparation_floor.py', '--annotations', str(source), '--layout', 'coco17',
                '--data-root', str(data), '--protocol', 'xsub'])
    check(done, [r'^source coordinates, centred per frame\s+1-NN\s+[\d.]+', r'^prepared arrays\s+1-NN\s+[\d.]+'])


def test_the_gpu_check_says_in_one_line_that_there_is_no_gpu():
    done = run(['bash', 'benchmarks/gpu_check.sh'], env=dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES=''))
    assert done.returncode == 1
    assert done.stdout.strip().splitlines() == ['gpu_check.sh: no CUDA device here (PyTorch under '
                                                f'{sys.executable} sees none, or is not installed); nothing run']


def test_a_pretraining_script_without_its_data_says_so_in_one_line(tmp_path):
    done = run(['bash', 'scripts/pretrain_ntu60_xsub.sh', '--device', 'cpu'],
               env=dict(os.environ, PYTHON=sys.executable, DATA_ROOT=str(tmp_path), OUTPUT_ROOT=str(tmp_path / 'out')))
    assert done.returncode != 0
    lines = [line for line in done.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and 'missing train_data_joint.npy' in lines[0], done.stderr[-2000:]
