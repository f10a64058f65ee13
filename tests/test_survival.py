"""What a run survives (docs/pretraining.md): torchrun on GPUs without --device, the fast path's
self-check, SIGKILL at fixed points, a full disk, and a rank that dies."""
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest
import torch

import fast.grouped
import pretrain
from benchmarks.kill_resume import differences, pretrain_command
from tests.conftest import run_pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 4


class FirstCollective(Exception):
    pass


def test_torchrun_on_gpus_without_device_joins_nccl_on_its_own_gpu(data_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: calls.append(('set_device', device)))
    monkeypatch.setattr(torch.distributed, 'init_process_group',
                        lambda backend, **kwargs: calls.append(('init_process_group', backend)))
    monkeypatch.setattr('utils.dist._store', lambda: mock.Mock())

    def barrier(*args, **kwargs):
        calls.append(('barrier',))
        raise FirstCollective
    monkeypatch.setattr(torch.distributed, 'barrier', barrier)
    args = pretrain.get_pretrain_parser().parse_args(['--dataset', 'synthetic', '--data-root', str(data_root),
                                                      '--output-dir', str(tmp_path / 'run')])
    assert args.device is None  # as scripts/_pretrain.sh starts it
    with pytest.raises(FirstCollective):
        pretrain.main(args)
    assert calls == [('set_device', 1), ('init_process_group', 'nccl'), ('barrier',)]


@pytest.mark.parametrize('script, parser', [('linear_eval', 'get_linear_parser'), ('knn_eval', 'get_knn_parser'),
                                            ('finetune', 'get_finetune_parser')])
def test_evaluation_under_torchrun_is_refused_in_one_line(script, parser, data_root, monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    module = __import__(script)
    args = getattr(module, parser)().parse_args(['--dataset', 'synthetic', '--data-root', str(data_root), '--output-dir', 'unused'])
    with pytest.raises(SystemExit, match=r'runs as one process, but was started as one of 2 \(WORLD_SIZE\); run it '
                                         r'with python, not torchrun'):
        module.main(args)


def test_cuda_without_a_gpu_is_one_line(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='--device cuda, but PyTorch sees no CUDA device here'):
        run_pretrain(data_root, tmp_path / 'run', '--device', 'cuda')


# --- the self-check ------------------------------------------------------------------------

GROUPED = ('--epochs', '2', '--gru-impl', 'grouped', '--knn-every', '0')


def _args(out):
    return json.loads((out / 'args.json').read_text())


def test_a_correct_fast_path_passes_the_self_check(data_root, tmp_path, capsys):
    run_pretrain(data_root, tmp_path / 'fast', *GROUPED)
    said = capsys.readouterr().out
    assert 'self-check of the fast path passed in' in said and 'tolerance 0.001' in said
    args = _args(tmp_path / 'fast')
    assert args['speed_fallback'] is None and args['gru_impl'] == 'grouped'


@pytest.mark.parametrize('wrong, message', [
    (lambda features: [f * 1.01 for f in features], r'largest relative difference 0.0\d+ in (loss|encoder_q\.\w+) '
                                                     r'\(tolerance 0.001\)'),
    (lambda features: [f * float('nan') for f in features], r'not finite on the fast path: loss, queue, encoder_q\.joint, '),
    (None, 'the fast path raised RuntimeError: a kernel that fails on this machine'),
], ids=['perturbed', 'non-finite', 'raises'])
def test_a_wrong_fast_path_falls_back_to_the_reference(data_root, tmp_path, capsys, monkeypatch, wrong, message):
    right = fast.grouped.grouped_features

    def grouped(*args, **kwargs):
        if wrong is None:
            raise RuntimeError('a kernel that fails on this machine\nsecond line')
        return wrong(right(*args, **kwargs))
    monkeypatch.setattr('fast.model.grouped_features', grouped)
    fell_back = run_pretrain(data_root, tmp_path / 'fast', *GROUPED)
    said = capsys.readouterr().out
    assert len([line for line in said.splitlines() if 'self-check' in line]) == 1
    assert 'self-check of the fast path FAILED in' in said and '; continuing on --speed reference' in said
    assert re.search(message, said)
    args = _args(tmp_path / 'fast')
    assert re.search(message, args['speed_fallback'])
    assert args['speed'] == 'reference' and args['gru_impl'] == 'fused' and not args['cuda_graph']
    checkpoint = torch.load(tmp_path / 'fast' / 'checkpoint.pth', weights_only=True)
    assert checkpoint['args']['speed_fallback'] == args['speed_fallback']
    # the check changed nothing of the run: it is the reference run, bit for bit
    reference = run_pretrain(data_root, tmp_path / 'reference', '--epochs', '2', '--knn-every', '0')
    for (name, a), (_, b) in zip(reference.state_dict().items(), fell_back.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_run_that_fell_back_resumes_on_the_reference(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr('fast.model.grouped_features', lambda *a, **k: 1 / 0)
    run_pretrain(data_root, tmp_path / 'run', *GROUPED)
    monkeypatch.undo()
    capsys.readouterr()
    run_pretrain(data_root, tmp_path / 'run', '--epochs', '3', '--gru-impl', 'grouped', '--knn-every', '0',
                 '--auto-resume')
    said = capsys.readouterr().out
    assert 'continuing on --speed reference, as this run has since its self-check: the fast path raised ' \
           'ZeroDivisionError' in said and 'self-check of the fast path' not in said
    assert _args(tmp_path / 'run')['gru_impl'] == 'fused'


def test_self_check_off_skips_it(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr('fast.model.grouped_features', lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_pretrain(data_root, tmp_path / 'run', *GROUPED, '--self-check', 'off')
    assert 'self-check' not in capsys.readouterr().out


def test_the_self_check_compares_with_the_arithmetic_stated():
    from fast.self_check import FLOAT32_FLOOR, ROUNDING_FACTOR, compare
    ref = {'loss': torch.tensor([2.0]), 'encoder_q.joint': torch.ones(100)}
    close = {'loss': torch.tensor([2.0]), 'encoder_q.joint': torch.ones(100) * (1 + FLOAT32_FLOOR / 2)}
    far = {'loss': torch.tensor([2.0]), 'encoder_q.joint': torch.ones(100) * (1 + FLOAT32_FLOOR * 2)}
    assert compare(close, ref)[0] and not compare(far, ref)[0]
    # with TF32 (say) the reference's own rounding sets the scale: ROUNDING_FACTOR times it
    rounding = {'loss': 0.0, 'encoder_q.joint': 0.01}
    assert compare({'loss': ref['loss'], 'encoder_q.joint': torch.ones(100) * 1.039}, ref, rounding)[0]
    passed, reason = compare({'loss': ref['loss'], 'encoder_q.joint': torch.ones(100) * 1.041}, ref, rounding)
    assert not passed and reason == ('largest relative difference 0.041 in encoder_q.joint (tolerance 0.04: '
                                     f'{ROUNDING_FACTOR:g} x the reference\'s own rounding 0.01)')


# --- SIGKILL at fixed points -------------------------------------------------------------

KILLER = '''
import io, os, signal, sys
sys.path.insert(0, {root!r})
import torch
import engine, fast.settings, pretrain, utils.checkpoint_io as checkpoint_io
point, at = sys.argv[1], int(sys.argv[2])
calls = [0]

def due():
    calls[0] += 1
    return calls[0] == at

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

if point == 'step':
    step = fast.settings.train_step
    def killing_step(*args, **kwargs):
        if due():
            kill()
        return step(*args, **kwargs)
    fast.settings.train_step = killing_step
elif point == 'checkpoint-write':  # half the file written to its temporary name
    save = checkpoint_io.save_atomic
    def killing_save(obj, path):
        if str(path).endswith('checkpoint.pth') and due():
            data = io.BytesIO()
            torch.save(obj, data)
            with open(f'{{path}}.tmp{{os.getpid()}}', 'wb') as f:
                f.write(data.getvalue()[:len(data.getvalue()) // 2])
            kill()
        return save(obj, path)
    checkpoint_io.save_atomic = killing_save
elif point == 'log':  # the checkpoint written, its log line not yet
    append = engine.append_jsonl
    def killing_append(path, record):
        if due():
            kill()
        return append(path, record)
    engine.append_jsonl = killing_append
sys.argv = ['pretrain.py'] + sys.argv[3:]
pretrain.run_cli(pretrain.main, pretrain.get_pretrain_parser())
'''


def _killed_at(data_root, out, point, at):
    killed = subprocess.run([sys.executable, '-c', KILLER.format(root=ROOT), point, str(at),
                             *pretrain_command(data_root, out, EPOCHS)[2:]], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


@pytest.fixture(scope='module')
def uninterrupted(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('uninterrupted') / 'run'
    subprocess.run(pretrain_command(data_root, out, EPOCHS), check=True, capture_output=True)
    return out


@pytest.mark.parametrize('point, at', [('step', 5), ('checkpoint-write', 2), ('log', 3)],
                         ids=['mid-epoch', 'inside-the-checkpoint-write', 'before-the-log-line'])
def test_a_killed_run_resumes_exactly(data_root, tmp_path, uninterrupted, point, at):
    out = tmp_path / 'run'
    _killed_at(data_root, out, point, at)
    if point == 'checkpoint-write':
        assert list(out.glob('checkpoint.pth.tmp*'))  # killed inside the write, its temporary file left
    subprocess.run(pretrain_command(data_root, out, EPOCHS), check=True, capture_output=True)
    assert differences(uninterrupted, out) == []
    assert not list(out.glob('*.tmp*'))


# --- a full disk --------------------------------------------------------------------------


def _limit_file_size(size):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_a_checkpoint_that_cannot_be_written_leaves_the_last_one_and_resumes(data_root, tmp_path, uninterrupted):
    out = tmp_path / 'run'
    # two epochs, the second monitored as in the longer run (--knn-every 2), then the rest of it
    subprocess.run(pretrain_command(data_root, out, 2), check=True, capture_output=True)
    before = {name: (out / name).read_bytes() for name in ('checkpoint.pth', 'checkpoint_0001.pth', 'log.txt')}
    limit = len(before['checkpoint.pth']) // 2  # args.json, the log and TensorBoard's events stay below it
    full = subprocess.run(pretrain_command(data_root, out, EPOCHS), capture_output=True, text=True,
                          preexec_fn=_limit_file_size(limit))
    assert full.returncode == 1
    error = full.stderr.strip().splitlines()
    # epoch 2's snapshot is written first (then checkpoint.pth): the first file that does not fit
    assert len(error) == 1 and error[0].startswith(f'error: {out / "checkpoint_0002.pth"}: cannot be written (File too '
                                                   'large: beyond the file-size limit, ulimit -f). The checkpoint '
                                                   f'written before is as it was ({out / "checkpoint.pth"}); make '
                                                   'room and continue with --auto-resume'), error
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.glob('*.tmp*'))
    subprocess.run(pretrain_command(data_root, out, EPOCHS), check=True, capture_output=True)
    assert differences(uninterrupted, out) == []


def test_a_prepared_array_that_cannot_be_written_leaves_the_output_as_it_was(data_root, tmp_path):
    raw = data_root.parent / 'raw'
    command = [sys.executable, '-m', 'feeder.prepare', '--dataset', 'synthetic', '--raw-dir', str(raw), '--out-dir',
               str(tmp_path / 'out'), '--workers', '0', '--quiet']
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    before = _files(tmp_path / 'out')
    full = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, preexec_fn=_limit_file_size(64 * 1024))
    assert full.returncode == 1
    error = full.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith('error: ') and '_data_joint.npy: cannot be written (File too ' \
        f'large: beyond the file-size limit, ulimit -f); the output in {tmp_path / "out"} is as it was' in error[0]
    assert _files(tmp_path / 'out') == before and sorted(os.listdir(tmp_path / 'out')) == sorted(
        {str(p).split(os.sep)[0] for p in before})
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    assert _files(tmp_path / 'out') == before


# --- a rank that dies ---------------------------------------------------------------------


def _torchrun(data_root, out, epochs):
    # the grouped recurrence: its self-check runs on both ranks, under DDP
    command = pretrain_command(data_root, out, epochs, '--knn-every', '0', '--gru-mode', 'published', '--gru-impl',
                               'grouped')
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', *command[1:]]


def _rank_pid(parent, rank):
    for child in subprocess.run(['pgrep', '-P', str(parent)], capture_output=True, text=True).stdout.split():
        with open(f'/proc/{child}/environ', 'rb') as f:
            if f'RANK={rank}'.encode() in f.read().split(b'\0'):
                return int(child)
    return None


def test_a_rank_that_dies_stops_the_other_and_the_run_resumes(data_root, tmp_path):
    out = tmp_path / 'run'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    launcher = subprocess.Popen(_torchrun(data_root, out, 400), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / 'checkpoint_0002.pth').exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    victim = _rank_pid(launcher.pid, 1)
    assert victim, 'rank 1 was not found'
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    said, _ = launcher.communicate(timeout=150)
    assert time.monotonic() - killed_at < 120
    assert launcher.returncode != 0
    assert 'self-check of the fast path passed' in said
    line = [s for s in said.splitlines() if s.startswith('error: rank 0:')]
    assert line and 'rank 1 died; stopped. The last checkpoint' in line[0] and 'is intact: continue with ' \
                                                                             '--auto-resume' in line[0], said[-3000:]
    checkpoint = torch.load(out / 'checkpoint.pth', weights_only=True)  # reads: intact
    done = checkpoint['epoch']
    log = [json.loads(s) for s in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log][-1] <= done - 1
    resumed = subprocess.run(_torchrun(data_root, out, done + 2), capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = [json.loads(s)['epoch'] for s in (out / 'log.txt').read_text().splitlines()]
    assert log == list(range(done + 2))


def _watched_rank(rank, init_file, dead_after, queue):
    import torch.distributed as dist
    from utils.dist import RankStopped, RankWatch
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    watch = RankWatch(heartbeat=0.2, dead_after=dead_after, grace=5)
    start = time.monotonic()
    try:
        with watch():
            if rank == 1:
                time.sleep(1)
                os.kill(os.getpid(), signal.SIGKILL)  # dies without a word, outside any collective
            time.sleep(60)
    except RankStopped as e:
        queue.put((str(e), time.monotonic() - start))
        os.kill(os.getpid(), signal.SIGTERM)  # the launcher's, while this rank says why it stopped
        time.sleep(0.5)
        queue.put('survived the SIGTERM')


def test_the_watch_stops_a_rank_whose_peer_fell_silent(tmp_path):
    import torch.multiprocessing as mp
    context = mp.get_context('spawn')
    queue = context.Queue()
    processes = [context.Process(target=_watched_rank, args=(r, str(tmp_path / 'init'), 2.0, queue)) for r in (0, 1)]
    for p in processes:
        p.start()
    reason, after = queue.get(timeout=60)
    said = queue.get(timeout=10)
    for p in processes:
        p.join(timeout=30)
    assert reason == 'rank 1 has given no sign of life for 2 s' and after < 10
    assert said == 'survived the SIGTERM'


def test_atomic_writes_wait_for_the_disk_unless_the_file_can_be_made_again(tmp_path, monkeypatch):
    from utils.io import write_text_atomic
    synced = []
    monkeypatch.setattr(os, 'fsync', synced.append)
    write_text_atomic(str(tmp_path / 'kept'), 'a')
    write_text_atomic(str(tmp_path / 'generated'), 'b', durable=False)
    assert len(synced) == 1
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {'kept': 'a', 'generated': 'b'}  # no temporaries
