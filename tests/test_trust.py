"""Runs that can be trusted: nothing of an earlier run lost or mixed, damaged checkpoints and
diverged runs reported in one line, data checked against the dataset (docs/checkpoints.md)."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import knn_eval
import linear_eval
import pretrain
from engine import DIVERGENCE_FACTOR
from tests.conftest import gru, run_pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(folder, name='log.txt'):
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_an_output_folder_holding_a_run_is_never_mixed(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--knn-every', '0')
    first = (out / 'checkpoint.pth').read_bytes()
    with pytest.raises(SystemExit, match=rf'--output-dir {out} already holds a run.*--auto-resume.*'
                                          r'another --output-dir.*--overwrite'):
        run_pretrain(data_root, out, '--epochs', '1')
    assert (out / 'checkpoint.pth').read_bytes() == first and len(_log(out)) == 1
    run_pretrain(data_root, out, '--epochs', '1', '--knn-every', '0', '--overwrite')
    aside = [p for p in tmp_path.iterdir() if p.name.startswith('run.replaced-')]
    assert len(aside) == 1 and (aside[0] / 'checkpoint.pth').read_bytes() == first
    assert [r['epoch'] for r in _log(out)] == [0]  # the new run alone, not appended to the old log
    (tmp_path / 'file').write_text('')
    with pytest.raises(SystemExit, match='is a file, not a folder'):
        run_pretrain(data_root, tmp_path / 'file', '--epochs', '1')


def test_the_scripts_continue_their_run(tmp_path):
    text = open(os.path.join(ROOT, 'scripts', '_pretrain.sh')).read()
    assert 'pretrain.py --dataset "$dataset" --protocol "$protocol" --auto-resume' in text


def test_a_truncated_checkpoint_falls_back_to_the_newest_snapshot_that_reads(data_root, tmp_path, capsys):
    straight = run_pretrain(data_root, tmp_path / 'a', '--epochs', '4', '--knn-every', '0')
    out = tmp_path / 'b'
    run_pretrain(data_root, out, '--epochs', '3', '--save-every', '2', '--knn-every', '0')  # snapshots 0 and 2
    latest = out / 'checkpoint.pth'
    latest.write_bytes(latest.read_bytes()[:5000])  # the last write torn
    (out / 'checkpoint_0002.pth').write_bytes(b'')  # and the newest snapshot empty
    with pytest.raises(ValueError, match=rf'^--resume {latest}: unreadable: a damaged or truncated PyTorch file'):
        run_pretrain(data_root, out, '--epochs', '4', '--resume', str(latest))
    capsys.readouterr()
    resumed = run_pretrain(data_root, out, '--epochs', '4', '--auto-resume', '--knn-every', '0')
    said = capsys.readouterr().out
    assert 'checkpoint.pth: unreadable' in said and 'checkpoint_0002.pth: unreadable: the file is empty' in said
    assert f'continuing from {out / "checkpoint_0000.pth"} (epoch 1)' in said
    # epochs 1 and 2 were logged after that snapshot: set aside, then logged again by the resumed run
    aside = [p.name for p in out.iterdir() if p.name.startswith('log.txt.set-aside-')]
    assert len(aside) == 1 and [r['epoch'] for r in _log(out, aside[0])] == [1, 2]
    assert [r['epoch'] for r in _log(out)] == [0, 1, 2, 3]
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_killed_write_leaves_no_temporary_behind(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--knn-every', '0')
    dead = out / f'checkpoint.pth.tmp{2 ** 22 + 7}'
    dead.write_bytes(b'half a checkpoint')
    live = out / f'checkpoint.pth.tmp{os.getppid()}'
    live.write_bytes(b'being written')
    run_pretrain(data_root, out, '--epochs', '2', '--auto-resume', '--knn-every', '0')
    assert not dead.exists() and live.exists()


def test_a_diverging_run_stops_before_saving_the_exploded_epoch(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--knn-every', '0')
    saved = (out / 'checkpoint.pth').read_bytes()
    with pytest.raises(FloatingPointError, match=rf'diverged at epoch 1 \(norm .*times the previous epoch.*'
                                                 rf'last checkpoint written before: {out / "checkpoint.pth"}'):
        run_pretrain(data_root, out, '--epochs', '3', '--auto-resume', '--lr', '1e6', '--knn-every', '0')
    assert (out / 'checkpoint.pth').read_bytes() == saved and len(_log(out)) == 1
    assert DIVERGENCE_FACTOR == 100  # the factor docs/pretraining.md and docs/checkpoints.md state


@pytest.mark.parametrize('flag', ['--batch-size', '--queue-size', '--topk'])
@pytest.mark.parametrize('value', ['0', '-4'])
def test_sizes_below_one_are_argument_errors(flag, value, capsys):
    with pytest.raises(SystemExit):
        pretrain.get_pretrain_parser().parse_args(['--data-root', 'x', flag, value])
    assert f'argument {flag}: {value} is not a whole number of at least 1' in capsys.readouterr().err


def test_workers_default_to_the_cores_at_most_four():
    code = 'import pretrain; print(pretrain.get_pretrain_parser().parse_args(["--data-root", "x"]).workers)'
    for cores in ('0', '0,1', '0-7'):
        out = subprocess.run(['taskset', '-c', cores, sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                             text=True)
        if out.returncode:  # taskset refuses cores the machine lacks
            continue
        assert int(out.stdout) == min(4, len(os.sched_getaffinity(0)) if cores == '0-7' else cores.count(',') + 1)


def test_the_knn_monitor_equals_knn_eval(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '2', '--knn-every', '1')
    log = _log(out)
    k = min(20, len(pickle.load(open(data_root / 'xsub' / 'train_label.pkl', 'rb'))[1]))  # capped: a tiny set
    assert all(f'knn1_{s}' in r and f'knn{k}_{s}' in r for r in log for s in ('joint', 'motion', 'bone', 'fused'))
    args = knn_eval.get_knn_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
         '--stream', 'all', '--k', '1', str(k), '--workers', '0', '--output-dir', str(tmp_path / 'knn')])
    accuracy = knn_eval.main(args)['accuracy']
    for stream in ('joint', 'motion', 'bone', 'fused'):
        assert log[-1][f'knn1_{stream}'] == accuracy[stream]['top1@k=1']
        assert log[-1][f'knn{k}_{stream}'] == accuracy[stream][f'top1@k={k}']
    run_pretrain(data_root, tmp_path / 'off', '--epochs', '2', '--knn-every', '0')
    assert not any(k.startswith('knn') for r in _log(tmp_path / 'off') for k in r)
    run_pretrain(data_root, tmp_path / 'sparse', '--epochs', '3', '--knn-every', '2')
    assert [any(k.startswith('knn') for k in r) for r in _log(tmp_path / 'sparse')] == [False, True, True]


def _copy_benchmark(src, dst):
    (dst / 'xsub').mkdir(parents=True)
    for name in os.listdir(src / 'xsub'):
        (dst / 'xsub' / name).write_bytes((src / 'xsub' / name).read_bytes())
    return dst / 'xsub'


def _linear(data_root, tmp_path, *extra):
    args = linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--output-dir', str(tmp_path / 'linear'),
         '--epochs', '1', '--batch-size', '4', '--workers', '0', '--device', 'cpu', '--quiet', *extra])
    return linear_eval.main(args)


def test_evaluation_checks_the_data_against_the_dataset(data_root, tmp_path):
    folder = _copy_benchmark(data_root, tmp_path / 'data')
    with open(folder / 'val_label.pkl', 'rb') as f:
        names, labels = pickle.load(f)
    labels[3] = 12  # synthetic has 12 classes: 0..11
    with open(folder / 'val_label.pkl', 'wb') as f:
        pickle.dump((names, labels), f)
    with pytest.raises(ValueError, match=rf'val_label.pkl: labels must lie in 0..11 .* clip {names[3]} has 12'):
        _linear(tmp_path / 'data', tmp_path)
    data = np.load(folder / 'train_data_joint.npy')
    np.save(folder / 'train_data_joint.npy', np.ascontiguousarray(data[..., :20, :1]))  # another layout
    with pytest.raises(ValueError, match=r'train_data_joint.npy holds 20 joints x 1 persons x 3 channels, but '
                                         r'synthetic is ntu25 \(25 joints\) x 2 persons'):
        _linear(tmp_path / 'data', tmp_path)


def test_evaluation_prints_the_architecture_it_uses(data_root, tmp_path, tiny_checkpoint, capsys):
    _linear(data_root, tmp_path, '--checkpoint', str(tiny_checkpoint), '--hidden-size', '64', '--num-layers', '5')
    out = capsys.readouterr().out
    assert 'the checkpoint fixes the encoder; ignored: --hidden-size 64, --num-layers 5' in out
    # each printed with where it came from
    assert all(f'{k}: {v}  (checkpoint)\n' in out for k, v in (('hidden_size', 8), ('num_layers', 2), ('frames', 8)))
    results = json.loads((tmp_path / 'linear' / 'results.json').read_text())
    assert results['settings']['frames'] == 8


def _monitor_worker(rank, init_file, data_root, out_dir):
    import torch.distributed as dist
    from evaluation.monitor import KNNMonitor
    from feeder.info import dataset_info
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    torch.manual_seed(0)
    encoders = {m: gru(8, 2, dim=16) for m in ('joint', 'bone')}
    monitor = KNNMonitor(os.path.join(data_root, 'xsub'), dataset_info('synthetic'), 8, 1, 1, 0, torch.device('cpu'))
    monitor.parts['val'] = _odd(monitor.parts['val'])
    torch.save(monitor(encoders), os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def _odd(clips):
    """An odd number of the clips, so that one rank's shard is padded."""
    return torch.utils.data.Subset(clips, range(len(clips) - 1 + len(clips) % 2))


def test_the_monitor_under_ddp_uses_every_ranks_clips(data_root, tmp_path):
    # 2 ranks each encode every other clip (the odd count pads one shard): the same numbers as
    # one process encoding all of them
    import torch.multiprocessing as mp
    from evaluation.monitor import KNNMonitor
    from feeder.info import dataset_info
    mp.spawn(_monitor_worker, args=(str(tmp_path / 'init'), str(data_root), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    encoders = {m: gru(8, 2, dim=16) for m in ('joint', 'bone')}
    monitor = KNNMonitor(str(data_root / 'xsub'), dataset_info('synthetic'), 8, 1, 1, 0, torch.device('cpu'))
    monitor.parts['val'] = _odd(monitor.parts['val'])
    assert len(monitor.parts['val']) % 2
    single = monitor(encoders)
    for rank in (0, 1):
        assert torch.load(tmp_path / f'rank{rank}.pt', weights_only=True) == single
