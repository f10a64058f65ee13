"""Pooled pretraining (feeder/pool.py): the synthetic NTU-layout set pooled with the same performances
in the synthetic 3D rig's layout, the pooled clips against their map written out, the balanced
sampler's shares, the run's record, monitors and resume, and the refusals."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import feeder.prepare as prep
from feeder.datasets import SkeletonFolder
from feeder.info import dataset_info
from feeder.pool import BalancedSampler, PooledFolder, in_layout, open_pool, pooled_info, pooled_parts, read_pool
from feeder.raw.synthetic import write_pyskl
from tests.conftest import openpose_data, run_pretrain, tiny_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# NTU's joints from the synthetic rig's (feeder/raw/synthetic.py, RIG), by name, written out; the
# hands, feet, hand tips and thumbs are not in the rig
NTU_FROM_RIG = {'spine_base': 'pelvis', 'spine_mid': 'spine', 'neck': 'neck', 'head': 'head',
                'shoulder_left': 'l_shoulder', 'elbow_left': 'l_elbow', 'wrist_left': 'l_wrist',
                'shoulder_right': 'r_shoulder', 'elbow_right': 'r_elbow', 'wrist_right': 'r_wrist',
                'hip_left': 'l_hip', 'knee_left': 'l_knee', 'ankle_left': 'l_ankle', 'hip_right': 'r_hip',
                'knee_right': 'r_knee', 'ankle_right': 'r_ankle', 'spine_shoulder': 'chest'}


@pytest.fixture(scope='module')
def rig(tmp_path_factory):
    """The synthetic performances in the 3D rig's layout (17 joints), prepared."""
    root = tmp_path_factory.mktemp('rig')
    write_pyskl(str(root / 'rig.pkl'), '3d', classes=4, subjects=3, cameras=2, replications=1)
    assert prep.main(['--dataset', 'custom', '--annotations', str(root / 'rig.pkl'), '--layout',
                      str(root / 'rig_layout.json'), '--out-dir', str(root / 'data'), '--workers', '0', '--quiet']) == 0
    return root / 'data'


def test_pooled_clips_are_the_others_mapped_as_written_out(data_root, rig):
    ntu = dataset_info('synthetic', str(data_root))
    pool = PooledFolder(open_pool(pooled_parts(read_pool([f'{rig}:xsub']), str(data_root), 'xsub', ntu), 'none'))
    own, other = SkeletonFolder(str(data_root / 'xsub'), 'train'), SkeletonFolder(str(rig / 'xsub'), 'train')
    assert len(pool) == len(own) + len(other) and pool.sizes == [len(own), len(other)]
    torch.testing.assert_close(pool.clip(3), own.clip(3))
    rig_names = dataset_info('custom', str(rig)).layout.joint_names
    for i in (0, len(other) - 1):
        source, made = other.clip(i), pool.clip(len(own) + i)
        written = torch.zeros(3, source.shape[1], 25, 2)
        for v, name in enumerate(ntu.layout.joint_names):
            if name in NTU_FROM_RIG:
                written[:, :, v] = source[:, :, rig_names.index(NTU_FROM_RIG[name])]
        torch.testing.assert_close(made, written)


def test_a_named_layout_maps_the_runs_own_benchmark_too(data_root, rig, tmp_path):
    """--layout: the run's skeleton is the named layout (here the rig's JSON), the run's own NTU clips
    mapped into it as written out, the pooled rig's taken as they are."""
    ntu, layout = dataset_info('synthetic', str(data_root)), str(rig.parent / 'rig_layout.json')
    run = in_layout(ntu, layout, read_pool([f'{rig}:xsub']))
    assert run.layout == dataset_info('custom', str(rig)).layout and run.persons == 2 and run.channels == 'xyz'
    pool = PooledFolder(open_pool(pooled_parts(read_pool([f'{rig}:xsub']), str(data_root), 'xsub', ntu, run), 'none'))
    assert pool.parts[1].adapt is None
    own = SkeletonFolder(str(data_root / 'xsub'), 'train')
    rig_names, ntu_names = run.layout.joint_names, ntu.layout.joint_names
    for i in (0, len(own) - 1):
        source, written = own.clip(i), torch.zeros(3, own.clip(i).shape[1], 17, 2)
        for name, rig_name in NTU_FROM_RIG.items():
            written[:, :, rig_names.index(rig_name)] = source[:, :, ntu_names.index(name)]
        torch.testing.assert_close(pool.clip(i), written)
    with pytest.raises(ValueError, match=r"--layout nowhere: unknown skeleton layout 'nowhere'"):
        in_layout(ntu, 'nowhere')
    (tmp_path / 'broken.json').write_text('{"name": 3')
    with pytest.raises(ValueError, match=r'^--layout \S*broken.json: not JSON \(Expecting'):
        in_layout(ntu, str(tmp_path / 'broken.json'))
    # a run in it records the layout, its own map, and keeps both when resumed without them
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--pool', f'{rig}:xsub', '--layout', layout, '--knn-every', '1')
    args = json.loads((out / 'args.json').read_text())
    assert args['layout'] == layout and args['sources']['layout'] == 'command line'
    assert args['pool_mapping']['synthetic']['source'] == 'ntu25' and args['pool_mapping'][
        f'{dataset_info("custom", str(rig)).name}:xsub'] is None
    assert torch.load(out / 'checkpoint.pth', weights_only=True)['dataset']['layout']['name'] == 'synthetic_rig'
    run_pretrain(data_root, out, '--epochs', '2', '--auto-resume')
    args = json.loads((out / 'args.json').read_text())
    assert args['layout'] == layout and args['pool'] == [f'{rig}:xsub']
    # its own benchmark is evaluated through the same map
    import knn_eval
    result = knn_eval.main(knn_eval.get_knn_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
         '--stream', 'joint', '--workers', '0', '--device', 'cpu', '--output-dir', str(tmp_path / 'knn')]))
    assert result['mapping']['source'] == 'ntu25' and result['mapping']['target'] == 'synthetic_rig'


def test_balanced_sampling_gives_each_benchmark_its_share():
    sizes = [30, 6, 12]
    sampler = BalancedSampler(sizes, seed=1)
    sampler.set_epoch(2)
    order = list(sampler)
    assert len(order) == len(sampler) == 48
    part = np.searchsorted(np.cumsum(sizes), order, side='right')
    assert np.bincount(part).tolist() == [16, 16, 16]
    small = [i for i in order if 30 <= i < 36]  # 16 draws of 6 clips: each twice or thrice
    assert sorted(np.bincount(small)[30:].tolist()) == [2, 2, 3, 3, 3, 3]
    big = [i for i in order if i < 30]  # 16 of 30: none twice
    assert len(set(big)) == 16
    assert order == list(sampler)
    sampler.set_epoch(3)
    assert order != list(sampler)
    # two processes take every other clip of the same order
    ranks = [BalancedSampler(sizes, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(order)


def test_a_pooled_run_records_monitors_and_resumes(data_root, rig, tmp_path, capsys):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--pool', f'{rig}:xsub', '--knn-every', '1')
    printed = capsys.readouterr().out
    rig_name = dataset_info('custom', str(rig)).name
    own, other = (len(SkeletonFolder(str(root / 'xsub'), 'train')) for root in (data_root, rig))
    assert f'pool: synthetic, {own} training clips\npool: {rig_name}:xsub, {other} training clips; ' in printed
    # the small-data rules read the pool's size and median length
    ntu = dataset_info('synthetic', str(data_root))
    info = pooled_info(ntu, 'xsub', pooled_parts(read_pool([f'{rig}:xsub']), str(data_root), 'xsub', ntu))
    lengths = np.concatenate([np.load(root / 'xsub' / 'train_num_frame.npy') for root in (data_root, rig)])
    assert info.sizes['xsub']['train'] == own + other == len(lengths)
    assert info.lengths['xsub']['train']['median'] == float(np.median(lengths))
    assert 'read as synthetic (xyz, 2 persons): synthetic_rig -> ntu25: 17 of 25 joints by name' in printed
    args = json.loads((out / 'args.json').read_text())
    assert args['pool'] == [f'{rig}:xsub'] and args['pool_sampling'] == 'proportional'
    assert args['sources']['pool'] == 'command line'
    mapping = args['pool_mapping'][f'{rig_name}:xsub']
    assert mapping['source'] == 'synthetic_rig' and mapping['joints']['spine_shoulder'] == 'chest'
    record = json.loads((out / 'log.txt').read_text().splitlines()[-1])
    assert {'knn1_joint', f'{rig_name}:xsub/knn1_joint'} <= set(record)
    # resumed without --pool, it pools what it pooled
    run_pretrain(data_root, out, '--epochs', '2', '--auto-resume')
    args = json.loads((out / 'args.json').read_text())
    assert args['pool'] == [f'{rig}:xsub'] and args['sources']['pool'] == 'command line'  # where it came from


def test_what_cannot_be_pooled_gets_one_line(data_root, rig, tmp_path):
    coco = openpose_data(tmp_path)
    ntu = dataset_info('synthetic', str(data_root))
    with pytest.raises(ValueError, match=r'--pool .*:xsub: clips of channels xy cannot feed an encoder trained on xyz'):
        pooled_parts(read_pool([f'{coco}:xsub']), str(data_root), 'xsub', ntu)
    with pytest.raises(ValueError, match=r'has the benchmarks xsub, xview, not fold1'):
        pooled_parts(read_pool([f'{rig}:fold1']), str(data_root), 'xsub', ntu)
    with pytest.raises(FileNotFoundError, match=r'--pool .*nowhere:xsub: no .*dataset.json'):
        pooled_parts(read_pool([f'{tmp_path / "nowhere"}:xsub']), str(data_root), 'xsub', ntu)
    with pytest.raises(ValueError, match='is in the pool already'):
        pooled_parts(read_pool([f'{data_root}:xsub']), str(data_root), 'xsub', ntu)
    with pytest.raises(ValueError, match='expected ROOT:BENCHMARK'):
        pooled_parts(read_pool(['xsub']), str(data_root), 'xsub', ntu)
    with pytest.raises(SystemExit, match='--pool-sampling balanced shares the epochs between pooled benchmarks'):
        run_pretrain(data_root, tmp_path / 'b', '--epochs', '1', '--pool-sampling', 'balanced')
    assert not os.path.exists(tmp_path / 'b' / 'checkpoint.pth')


def test_a_pooled_run_on_two_processes(data_root, rig, tmp_path):
    """torchrun with two gloo processes on the CPU, the pool balanced: each process takes every
    other clip of the same draw, and both monitors run."""
    out = tmp_path / 'ddp'
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', 'pretrain.py', '--dataset',
               'synthetic', '--data-root', str(data_root), '--output-dir', str(out), '--pool', f'{rig}:xsub',
               '--pool-sampling', 'balanced', '--epochs', '2', '--knn-every', '1', *tiny_flags()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    args = json.loads((out / 'args.json').read_text())
    assert args['world_size'] == 2 and args['pool_sampling'] == 'balanced'
    rig_name = dataset_info('custom', str(rig)).name
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1] and all(f'{rig_name}:xsub/knn1_fused' in r for r in log)
