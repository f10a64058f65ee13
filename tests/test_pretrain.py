import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pretrain
from evaluation.pretrained import load_encoders
from fast.model import FastCMD
from feeder.info import dataset_info
from models import build_method
from models.cmd import CMD
from tests.conftest import run_pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(data_root, out, *extra):
    return run_pretrain(data_root, out, *extra)


def test_resume_continues_exactly(data_root, tmp_path):
    started = ['--shear', '0.5', '--corruption', '0.3', '--momentum-key', '0.9']  # not the preset's
    straight = run(data_root, tmp_path / 'a', '--epochs', '2', *started)
    run(data_root, tmp_path / 'b', '--epochs', '1', *started)
    # the settings the command line leaves open come from the checkpoint, not the preset
    resumed = run(data_root, tmp_path / 'b', '--epochs', '2', '--auto-resume')
    recorded = json.loads((tmp_path / 'b' / 'args.json').read_text())
    assert (recorded['shear'], recorded['corruption'], recorded['momentum_key']) == (0.5, 0.3, 0.9)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    opt_a = torch.load(tmp_path / 'a' / 'checkpoint.pth', weights_only=True)['optimizer']
    opt_b = torch.load(tmp_path / 'b' / 'checkpoint.pth', weights_only=True)['optimizer']
    for key in opt_a['state']:
        assert torch.equal(opt_a['state'][key]['momentum_buffer'], opt_b['state'][key]['momentum_buffer'])
    # the run's minutes go on from the checkpoint's: the resumed epoch adds its own to the first's
    first, second = [json.loads(line)['minutes'] for line in (tmp_path / 'b' / 'log.txt').read_text().splitlines()]
    assert 0 < first < second


def test_checkpoints_written_before_the_fast_package_resume_exactly(data_root, tmp_path):
    # written by commit b656b35 (before the code moved into fast/, evaluation/ and feeder/raw/)
    # after one epoch of these same tiny settings: resuming it equals running straight through
    old = os.path.join(ROOT, 'tests', 'data', 'tiny_checkpoint_b656b35.pth')
    # the synthetic preset of that time: resuming takes these from the checkpoint, or where it
    # does not record them (the augmentation's settings did not exist yet), from what the code did
    straight = run(data_root, tmp_path / 'a', '--epochs', '2', '--momentum-key', '0.999', '--corruption', '0.5',
                   '--shear', '1.0')
    os.makedirs(tmp_path / 'b')
    shutil.copy(old, tmp_path / 'b' / 'checkpoint.pth')
    resumed = run(data_root, tmp_path / 'b', '--epochs', '2', '--auto-resume')
    # The fixture's first epoch ran on another processor, whose float32 kernels (blocked matmuls,
    # vectorised sums) round differently: a few units in the last place (eps 1.2e-7) per step.
    # Resuming on the same machine is bit-exact (test_resume_continues_exactly).
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)
        else:
            assert torch.equal(a, b), name
    encoders, info, _ = load_encoders(old, ['joint', 'bone'], 'synthetic')
    assert info['kind'] == 'ours' and info['epoch'] == 1 and encoders['bone'].encoder.hidden_size == 8


def test_outputs(data_root, tmp_path):
    out = tmp_path / 'run'
    run(data_root, out, '--epochs', '3', '--save-every', '2')
    files = set(os.listdir(out))
    assert {'checkpoint.pth', 'checkpoint_0000.pth', 'checkpoint_0002.pth', 'log.txt', 'args.json',
            'tensorboard'} <= files and 'checkpoint_0001.pth' not in files
    checkpoint = torch.load(out / 'checkpoint.pth', weights_only=True)
    assert checkpoint['epoch'] == 3 and checkpoint['args']['queue_size'] == 8
    assert set(checkpoint) == {'model', 'optimizer', 'scaler', 'epoch', 'args', 'rng', 'dataset', 'log'}
    assert checkpoint['dataset']['layout']['name'] == 'ntu25' and checkpoint['dataset']['channels'] == 'xyz'
    assert checkpoint['model']['queue'].shape == (3, 128, 8)
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1, 2] and checkpoint['log'] == log[-1]
    assert {'infonce_joint', 'infonce_motion', 'infonce_bone', 'cmd', 'acc_joint', 'acc_motion',
            'acc_bone', 'lr'} <= set(log[0])
    assert json.loads((out / 'args.json').read_text())['topk'] == 4
    assert os.listdir(out / 'tensorboard')


def test_single_modality_run_is_moco(data_root, tmp_path):
    model = run(data_root, tmp_path / 'moco', '--epochs', '1', '--modalities', 'joint', '--cmd-weight', '0')
    assert list(model.encoder_q) == ['joint']
    log = json.loads((tmp_path / 'moco' / 'log.txt').read_text())
    assert 'cmd' not in log and 'infonce_motion' not in log


@pytest.mark.parametrize('extra, message', [
    (['--topk', '16'], 'exceeds --queue-size'),
    (['--queue-size', '10', '--topk', '2'], 'not a multiple of the global batch'),
    (['--batch-size', '64', '--queue-size', '64'], 'fewer than one global batch'),
    (['--protocol', 'xsetup'], 'not a benchmark of synthetic'),
    (['--min-crop', '9'], '--min-crop 9 must be between'),
    (['--amp', '--amp-dtype', 'float16'], 'needs --device cuda'),
    (['--cuda-graph'], '--cuda-graph needs --device cuda'),
    (['--overlap-keys'], '--overlap-keys needs --device cuda'),
    (['--gru-kernels', 'triton'], '--gru-kernels triton needs --device cuda'),
    (['--gru-kernels', 'triton-frame'], '--gru-kernels triton-frame needs --device cuda'),
    (['--gru-impl', 'grouped', '--recurrent-fp16', '--amp'], '--recurrent-fp16 needs'),
    (['--recurrent-fp16'], '--recurrent-fp16 needs --gru-impl grouped'),
    (['--gru-impl', 'grouped', '--recurrent-fp16', '--device', 'cuda', '--no-tf32'], 'contradicts --no-tf32'),
    (['--gru-impl', 'grouped', '--gru-mode', 'bidirectional'], '--gru-impl grouped needs'),
])
def test_inconsistent_settings_fail_before_work(data_root, tmp_path, extra, message, capsys):
    # a CUDA run's settings are checked before anything touches the GPU: none is needed here
    with pytest.raises(SystemExit, match=message), mock.patch('torch.cuda.is_available', return_value='cuda' in extra):
        run(data_root, tmp_path / 'x', '--epochs', '1', *extra)
    assert not (tmp_path / 'x').exists()


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing train_data_joint.npy'):
        run(tmp_path / 'nowhere', tmp_path / 'x', '--epochs', '1')


def test_background_saver_writes_a_snapshot_and_reports_errors(tmp_path):
    from utils.checkpoint_io import BackgroundSaver
    from utils.io import WriteError
    saver, log = BackgroundSaver(), []
    weights = torch.arange(6.)
    saver.save({'w': weights, 'meta': [1, (2, torch.ones(2))]}, [tmp_path / 'a.pth', tmp_path / 'b.pth'],
               then=lambda: log.append('a, b'))
    weights.add_(100)  # the next steps change the live tensors: the files keep the state at save
    saver.wait()
    for name in 'ab':
        saved = torch.load(tmp_path / f'{name}.pth', weights_only=True)
        assert torch.equal(saved['w'], torch.arange(6.)) and saved['meta'][0] == 1
        assert torch.equal(saved['meta'][1][1], torch.ones(2))
    assert log == ['a, b'] and not list(tmp_path.glob('*.tmp*'))
    # a later save reuses the host buffers: the new values, whatever changes after
    saver.save({'w': weights, 'meta': [1, (2, torch.ones(2))]}, [tmp_path / 'a.pth'])
    weights.zero_()
    saver.wait()
    assert torch.equal(torch.load(tmp_path / 'a.pth', weights_only=True)['w'], torch.arange(6.) + 100)
    # a failed write is raised in the training thread (once), and what follows it does not run
    saver.save({'w': weights}, [tmp_path / 'missing' / 'c.pth'], then=lambda: log.append('c'))
    with pytest.raises(WriteError, match=r'missing/c.pth: cannot be written \(No such file or directory\)'):
        saver.wait()
    saver.wait()
    assert log == ['a, b']


def test_non_finite_loss_stops_and_keeps_the_checkpoint(data_root, tmp_path):
    out = tmp_path / 'run'
    run(data_root, out, '--epochs', '1')
    before = (out / 'checkpoint.pth').read_bytes()
    broken = tmp_path / 'broken'
    (broken / 'xsub').mkdir(parents=True)
    for name in os.listdir(data_root / 'xsub'):
        os.symlink(data_root / 'xsub' / name, broken / 'xsub' / name)
    os.remove(broken / 'xsub' / 'train_data_joint.npy')
    data = np.load(data_root / 'xsub' / 'train_data_joint.npy')
    data[:, 0] = np.nan
    np.save(broken / 'xsub' / 'train_data_joint.npy', data)
    with pytest.raises(FloatingPointError, match='epoch 1, step 0'):
        run(broken, out, '--epochs', '2', '--auto-resume')
    assert (out / 'checkpoint.pth').read_bytes() == before


def _ddp_worker(rank, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    torch.manual_seed(rank)  # different initial draws: DDP must bring the ranks together
    args = argparse.Namespace(encoder='gru', hidden_size=8, num_layers=2, dim=16, mlp=True, gru_mode='published',
                              gru_pool='last',
                              modalities=['joint', 'motion', 'bone'], queue_size=16, momentum_key=0.99,
                              contrast_t=0.07, topk=8, teacher_t=0.05, student_t=0.1, cmd_weight=1.0,
                              distributed=True, local_rank=0)
    model = pretrain.wrap_distributed(build_method(args, dataset_info('ntu60')), args, torch.device('cpu'))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    torch.manual_seed(100 + rank)  # each rank sees different clips
    for _ in range(2):
        loss, _ = model((torch.randn(4, 3, 6, 25, 2), torch.randn(4, 3, 6, 25, 2)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Parameters (query and key encoders) and queues must agree. BatchNorm statistics are only
    # synchronised at the next forward on CPU, where SyncBatchNorm does not exist.
    state = {k: v.clone() for k, v in model.module.named_parameters()}
    state.update(queue=model.module.queue.clone(), queue_ptr=model.module.queue_ptr.clone())
    torch.save(state, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def test_two_gloo_ranks_hold_identical_state(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / 'rank0.pt', weights_only=True)
    b = torch.load(tmp_path / 'rank1.pt', weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the queue received the global batch (2 ranks x 4) at each of the 2 steps
    assert int(a['queue_ptr']) == 16 % 16 and not torch.equal(a['queue'][:, :, :4], a['queue'][:, :, 4:8])


@pytest.mark.parametrize('workers', ['0', '2'])
def test_augmenting_on_the_device_trains_and_resumes_exactly(data_root, tmp_path, workers):
    extra = ['--augment-on', 'device', '--workers', workers]
    straight = run(data_root, tmp_path / 'a', '--epochs', '2', *extra)
    run(data_root, tmp_path / 'b', '--epochs', '1', *extra)
    resumed = run(data_root, tmp_path / 'b', '--epochs', '2', *extra, '--auto-resume')
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.load(tmp_path / 'a' / 'checkpoint.pth', weights_only=True)['args']['augment_on'] == 'device'


def test_bfloat16_pretraining_on_the_cpu_stays_close_to_float32(data_root, tmp_path):
    # the same clips and draws in both runs: bfloat16 moves each logged loss by a few percent
    # (the golden step bounds one step at 3%), and it does move them
    run(data_root, tmp_path / 'f32', '--epochs', '2')
    run(data_root, tmp_path / 'bf16', '--epochs', '2', '--amp')
    logs = {k: [json.loads(line) for line in (tmp_path / k / 'log.txt').read_text().splitlines()]
            for k in ('f32', 'bf16')}
    keys = ('loss', 'infonce_joint', 'infonce_motion', 'infonce_bone')
    for full, half in zip(logs['f32'], logs['bf16']):
        for key in keys:
            assert half[key] == pytest.approx(full[key], rel=0.05), key
    assert any(half[k] != full[k] for full, half in zip(logs['f32'], logs['bf16']) for k in keys)
    assert torch.load(tmp_path / 'bf16' / 'checkpoint.pth', weights_only=True)['args']['amp']


def speed_args(*extra, device='cuda', world_size=1):
    """Resolved pretraining arguments as a run on ``device`` would see them (no GPU needed)."""
    args = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ntu60', '--data-root', 'unused',
                                                      '--output-dir', 'unused', '--device', device, *extra])
    return pretrain.resolve_settings(args, dataset_info(args.dataset), device, (0, world_size, 0))


SWITCHES = ('gru_impl', 'cuda_graph', 'overlap_keys', 'recurrent_fp16', 'tf32', 'augment_on')


@pytest.mark.parametrize('extra, device, world_size, expected', [
    ([], 'cuda', 1, ('grouped', True, True, True, True, 'device')),
    (['--speed', 'fast'], 'cuda', 2, ('fused', False, False, False, True, 'device')),
    (['--speed', 'reference'], 'cuda', 1, ('fused', False, False, False, True, 'device')),
    (['--speed', 'reference', '--gru-impl', 'grouped', '--cuda-graph'], 'cuda', 1,
     ('grouped', True, False, False, True, 'device')),
    (['--amp'], 'cuda', 1, ('grouped', True, True, False, True, 'device')),
    (['--amp', '--amp-dtype', 'float16'], 'cuda', 1, ('grouped', False, True, False, True, 'device')),
    (['--no-tf32'], 'cuda', 1, ('grouped', True, True, False, False, 'device')),
    (['--encoder', 'stgcn'], 'cuda', 1, ('fused', True, True, False, True, 'device')),
    (['--encoder', 'stgcn', '--cos'], 'cuda', 1, ('fused', False, True, False, True, 'device')),
    (['--gru-mode', 'bidirectional'], 'cuda', 1, ('fused', False, True, False, True, 'device')),
    ([], 'cpu', 1, ('fused', False, False, False, False, 'loader')),
    (['--speed', 'fast'], 'cpu', 1, ('fused', False, False, False, False, 'loader')),
])
def test_speed_resolves_its_switches(extra, device, world_size, expected):
    args, speed = speed_args(*extra, device=device, world_size=world_size)
    assert tuple(getattr(speed, k) for k in SWITCHES) == expected
    assert tuple(getattr(args, k) for k in SWITCHES) == expected  # recorded in args.json
    given = {a.removeprefix('--').removeprefix('no-').replace('-', '_') for a in extra if a.startswith('--')}
    default = f'speed default ({device}, {world_size} process{"es" if world_size > 1 else ""}, --method cmd)'
    assert {k: args.sources[k] for k in SWITCHES if k != 'augment_on'} == \
        {k: 'command line' if k in given else default for k in SWITCHES if k != 'augment_on'}
    assert args.speed == ('fast' if '--speed' not in extra and device == 'cuda' else
                          extra[extra.index('--speed') + 1] if '--speed' in extra else 'reference')


@pytest.mark.parametrize('method, graph', [('skeletonclr', True), ('crossclr', True), ('aimclr', True),
                                           ('mamp', False)])
def test_every_methods_step_is_captured_where_its_lr_holds(method, graph):
    # the fast model and overlapped keys are CMD's; a captured step is any method's, but MAMP's
    # published cosine schedule changes the lr at every step
    args, speed = speed_args('--method', method)
    assert (speed.gru_impl, speed.overlap_keys, speed.cuda_graph) == ('fused', False, graph)
    assert args.sources['cuda_graph'] == f'speed default (cuda, 1 process, --method {method})'


@pytest.mark.parametrize('extra, message', [
    (['--method', 'mamp'], '--cuda-graph replays one learning rate; --cos and a warm-up change it at every step'),
    (['--method', 'skeletonclr', '--optimizer', 'adamw'], '--cuda-graph captures SGD steps, not --optimizer adamw'),
    (['--amp', '--amp-dtype', 'float16'], '--cuda-graph cannot capture float16 gradient scaling'),
    (['--method', 'crossclr', '--overlap-keys'], '--gru-impl grouped and --overlap-keys compute --method cmd, not '
                                                  'crossclr'),
])
def test_a_step_that_cannot_be_captured_is_refused(extra, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        speed_args('--cuda-graph', *extra)


def test_the_reference_speed_builds_the_reference_model():
    args, speed = speed_args('--speed', 'reference', '--hidden-size', '8', '--num-layers', '1')
    assert type(build_method(args, dataset_info('ntu60'), **speed.model_options())) is CMD
    args, speed = speed_args('--hidden-size', '8', '--num-layers', '1')
    model = build_method(args, dataset_info('ntu60'), **speed.model_options())
    assert isinstance(model, FastCMD) and model.grouped and model.overlap_keys and model.recurrent_fp16


def test_help_shows_each_datasets_recipe(capsys):
    with pytest.raises(SystemExit):
        pretrain.get_pretrain_parser().parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'default: 0.01 (synthetic, ucla: 0.05; --encoder stgcn: 0.1; --method mamp: 0.001)' in text  # --lr
    assert 'default: 451 (pku2: 1001; synthetic: 60; ucla: 150; --encoder stgcn: 300; --method mamp: 400)' in text
    assert 'default: 16384 (synthetic, ucla: 256; --encoder stgcn: 32768)' in text  # --queue-size


def test_data_and_models_do_not_depend_on_the_options_layer():
    code = ('import sys, feeder.datasets, feeder.augment, feeder.info, feeder.raw.prepare, models; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("options", "fast", "evaluation")))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]'


def test_grouped_recurrence_trains_like_the_fused_one(data_root, tmp_path):
    fused = run(data_root, tmp_path / 'fused', '--epochs', '2', '--gru-impl', 'fused')
    grouped = run(data_root, tmp_path / 'grouped', '--epochs', '2', '--gru-impl', 'grouped')
    for (name, a), (_, b) in zip(fused.state_dict().items(), grouped.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    logs = [json.loads((tmp_path / k / 'log.txt').read_text().splitlines()[-1]) for k in ('fused', 'grouped')]
    assert logs[0]['loss'] == pytest.approx(logs[1]['loss'], rel=1e-5)


def test_fp16_recurrent_operands_train_close_to_float32(data_root, tmp_path):
    # rounding the recurrent operands to float16 moves a two-epoch run by rounding-sized amounts only
    plain = run(data_root, tmp_path / 'plain', '--epochs', '2', '--gru-impl', 'grouped')
    rounded = run(data_root, tmp_path / 'fp16', '--epochs', '2', '--gru-impl', 'grouped', '--recurrent-fp16')
    differs = False
    for (name, a), (_, b) in zip(plain.state_dict().items(), rounded.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-2, atol=1e-3, msg=name)
        differs |= not torch.equal(a, b)
    assert differs
    args = json.loads((tmp_path / 'fp16' / 'args.json').read_text())
    assert args['recurrent_fp16'] and args['gru_kernels'] == 'auto'
