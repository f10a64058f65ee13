"""The shell entry points end to end: the quick demo (synthetic data -> CMD and MoCo pretraining
-> kNN and linear) and the NW-UCLA script."""
import json
import os
import shutil
import subprocess
import sys

from tests.conftest import random_body

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_demo_learns(tmp_path):
    env = dict(os.environ, WORK=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(['bash', 'scripts/demo.sh', '--quick'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '| cmd |' in done.stdout and '| moco |' in done.stdout and '| random |' in done.stdout

    def linear(name):
        return json.loads((tmp_path / 'eval' / f'{name}-linear' / 'results.json').read_text())['accuracy']
    # A few epochs of pretraining already beat the random encoder clearly under the linear
    # protocol (1-NN on random GRU features is strong and needs longer pretraining to beat).
    assert linear('cmd')['fused']['top1'] > linear('random')['fused']['top1'] + 8
    assert linear('moco')['joint']['top1'] > linear('random')['joint']['top1'] + 4


def test_the_ucla_script_pretrains_evaluates_and_continues(tmp_path, rng):
    raw = tmp_path / 'raw' / 'all_sqe'
    raw.mkdir(parents=True)
    actions = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12]  # NW-UCLA's ten action numbers
    for i in range(100):  # 66 training clips: one linear-protocol batch (64) at least
        name = f'a{actions[i % 10]:02d}_s{1 + i % 10:02d}_e{i // 10:02d}_v0{1 + i % 3}'
        record = {'file_name': name, 'skeletons': random_body(rng, 20 + i % 30, joints=20).tolist(), 'label': 0}
        (raw / f'{name}.json').write_text(json.dumps(record))
    data = tmp_path / 'data'
    subprocess.run([sys.executable, '-m', 'feeder.prepare', '--dataset', 'ucla', '--raw-dir', str(raw.parent),
                    '--out-dir', str(data / 'NW-UCLA-AGCN')], cwd=ROOT, check=True, capture_output=True)
    env = dict(os.environ, DATA_ROOT=str(data), OUTPUT_ROOT=str(tmp_path / 'out'), PYTHON=sys.executable)
    small = ['--epochs', '2', '--schedule', '1', '--hidden-size', '8', '--frames', '8', '--min-crop', '4',
             '--batch-size', '4', '--queue-size', '8', '--topk', '4', '--workers', '0', '--device', 'cpu',
             '--knn-every', '0', '--quiet']

    def script():
        done = subprocess.run(['bash', 'scripts/pretrain_ucla_xview.sh', *small], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        run = tmp_path / 'out' / 'ucla_xview'
        return [json.loads((run / part / 'results.json').read_text()) for part in ('knn', 'linear')]

    knn, linear = script()
    for result in (knn, linear):
        assert set(result['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
        assert result['benchmark'] == 'xview' and result['pretrain_epoch'] == 2
    assert linear['settings']['epochs'] == 80  # the linear protocol's own defaults
    again, _ = script()  # a second call continues the finished run instead of refusing its folder
    assert again['checkpoint_sha256'] == knn['checkpoint_sha256'] and again['accuracy'] == knn['accuracy']


def _mine(tmp_path, rng, name='mine'):
    """90 labelled clips of a 15-joint chain (70 training clips: one linear-protocol batch of 64 at
    least), prepared into ``tmp_path/name``, and the environment of a small table run."""
    import numpy as np
    raw = tmp_path / f'{name}_clips'
    raw.mkdir()
    rows = ['name,label,split']
    for i in range(90):
        np.save(raw / f'c{i:02d}.npy', random_body(rng, 12 + i % 9, joints=15))
        rows.append(f'c{i:02d},{i % 3},b_{"train" if i < 70 else "val"}')
    (raw / 'labels.csv').write_text('\n'.join(rows) + '\n')
    data = tmp_path / name
    subprocess.run([sys.executable, '-m', 'feeder.prepare', '--dataset', 'custom', '--annotations', str(raw),
                    '--layout', str(_chain_layout(tmp_path, 15)),
                    '--out-dir', str(data), '--quiet', '--workers', '0'], cwd=ROOT, check=True, capture_output=True)
    small = ('--epochs 2 --hidden-size 8 --width 16 --depth 1 --heads 2 --frames 8 --min-crop 4 --batch-size 8 '
             '--queue-size 16 --topk 8 --workers 0 --device cpu --knn-every 0')
    return data, dict(os.environ, OUTPUT_ROOT=str(tmp_path / 'out'), PYTHON=sys.executable, PRETRAIN_ARGS=small,
                      LINEAR_ARGS='--epochs 2 --batch-size 16', FUSE_RAW='no')


def test_the_small_data_table_script(tmp_path, rng):
    data, env = _mine(tmp_path, rng)
    done = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'cmd', '--method', 'skeletonclr',
                           '--method', 'mamp', '--method', 'cmd:transformer', f'{data}:b'], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    table = {tuple(c.strip() for c in line.strip('|').split('|')[:2]): [c.strip() for c in line.strip('|').split('|')[2:]]
             for line in done.stdout.splitlines() if line.startswith('| mine_b |')}
    assert [row for _, row in table] == ['raw coordinates', 'random gru (as cmd)',
                                         'random transformer (as cmd_transformer)', 'random transformer (as mamp)',
                                         'random stgcn (as skeletonclr)', 'cmd (gru)', 'cmd_transformer (transformer)',
                                         'mamp (transformer)', 'skeletonclr (stgcn)']
    assert all(len(cells) == 8 for cells in table.values())
    run = tmp_path / 'out' / 'mine_b'
    kinds = {json.loads((run / k / 'knn' / 'results.json').read_text())['encoder_kind'] for k in
             ('cmd', 'random_cmd', 'raw')}
    assert kinds == {'ours', 'random', 'raw'}
    # each random baseline has its method's trained architecture and is evaluated with its protocol
    mamp_args = json.loads((run / 'mamp' / 'pretrain' / 'args.json').read_text())
    random_mamp = json.loads((run / 'random_mamp' / 'linear' / 'results.json').read_text())
    assert random_mamp['encoder'] == {k: mamp_args[k] for k in random_mamp['encoder']}
    assert random_mamp['encoder']['width'] == 16 and random_mamp['settings']['batchnorm'] is True
    raw_fused = json.loads((run / 'raw' / 'knn' / 'results.json').read_text())['accuracy']['fused']['top1@k=1']
    assert f'{raw_fused:.1f}' == table[('mine_b', 'raw coordinates')][3]
    single = table[('mine_b', 'skeletonclr (stgcn)')]  # one stream pretrained: joint alone
    linear = json.loads((run / 'skeletonclr' / 'linear' / 'results.json').read_text())['accuracy']['joint']['top1']
    assert single[0] and single[1:4] == ['', '', ''] and single[4] == f'{linear:.1f}' and float(single[7]) >= 0
    assert all(row[5:7] == ['', ''] for row in table.values()) and not (run / 'cmd' / 'knn_raw').exists()  # FUSE_RAW=no
    # run again without the checkpoints: what is finished is kept, not redone
    for checkpoint in run.rglob('*.pth'):
        checkpoint.unlink()
    again = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'cmd', '--method', 'skeletonclr',
                            '--method', 'mamp', '--method', 'cmd:transformer', f'{data}:b'], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0 and [line for line in again.stdout.splitlines() if line.startswith('| mine_b |')] == \
        [line for line in done.stdout.splitlines() if line.startswith('| mine_b |')]
    bad = subprocess.run(['bash', 'scripts/small_data_table.sh', str(data)], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and 'expected DATA_ROOT:BENCHMARK' in bad.stderr
    bad = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'nope', f'{data}:b'], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and '--method nope: known: cmd skeletonclr crossclr aimclr mamp' in bad.stderr
    bad = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'cmd:lstm', f'{data}:b'], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and '--method cmd:lstm: encoder lstm unknown; known: gru stgcn transformer' in bad.stderr
    bad = subprocess.run(['bash', 'scripts/small_data_table.sh', f'{data}:b'], cwd=ROOT, env=dict(env, FUSE_RAW='maybe'),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == 'error: FUSE_RAW=maybe: expected yes or no'
    bad = subprocess.run(['bash', 'scripts/small_data_table.sh', '--transfer', f'{data}:b'], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == ('error: --transfer reads each dataset through the others: '
                                                          'give two DATA_ROOT:BENCHMARK or more')


def test_the_few_labels_table(tmp_path, rng):
    data, env = _mine(tmp_path, rng)
    env.update(FRACTIONS='0.5 1', REPEATS='2', FINETUNE_ARGS='--epochs 1 --batch-size 16', FUSE_RAW='yes')
    done = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'cmd', '--labels', f'{data}:b'], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # each encoder also with the coordinates fused (the raw coordinates' row has nothing to fuse them with)
    table = {c[1]: c[2:] for c in ([c.strip() for c in line.strip('|').split('|')] for line in
                                   done.stdout.split('Fine-tuning top-1')[0].splitlines()
                                   if line.startswith('| mine_b |'))}
    run = tmp_path / 'out' / 'mine_b'
    for folder, row in (('cmd', 'cmd (gru)'), ('random_cmd', 'random gru (as cmd)')):
        with_raw = [json.loads((run / folder / name / 'results.json').read_text()) for name in ('knn_raw', 'linear_raw')]
        assert with_raw[0]['streams'][-3:] == ['raw_joint', 'raw_motion', 'raw_bone']
        assert table[row][5:7] == [f"{with_raw[0]['accuracy']['fused']['top1@k=1']:.1f}",
                                   f"{with_raw[1]['accuracy']['fused']['top1']:.1f}"]
    assert table['raw coordinates'][5:7] == ['', ''] and not (run / 'raw' / 'knn_raw').exists()
    after = done.stdout.split('Fine-tuning top-1 (%) on the val part with a share of the training labels')[1]
    assert after.startswith(', last epoch, mean +- sd over 2 seeds')
    lines = after.splitlines()
    assert '| dataset | features | 50% labels | 100% labels |' in lines
    table = [[c.strip() for c in line.strip('|').split('|')] for line in lines if line.startswith('| mine_b |')]
    assert [row[1] for row in table] == ['linear head on the raw coordinates', "from scratch (cmd's encoder)",
                                         'cmd, pretrained']
    for row, folder in zip(table, ('raw', 'random_cmd', 'cmd')):
        for cell, fraction in zip(row[2:], ('0.5', '1')):
            result = json.loads((run / folder / f'finetune_{fraction}' / 'results.json').read_text())
            assert len(result['runs']) == 2 and result['settings']['label_fraction'] == float(fraction)
            assert cell == f"{result['accuracy']['top1_mean']:.1f} +- {result['accuracy']['top1_std']:.1f}"
    kinds = {json.loads((run / f / 'finetune_1' / 'results.json').read_text())['encoder_kind'] for f in
             ('raw', 'random_cmd', 'cmd')}
    assert kinds == {'raw', 'random', 'ours'}
    # a user's own fine-tuning beside the script's (another batch) is not read as a share of the labels
    shutil.copytree(run / 'cmd' / 'finetune_1', run / 'cmd' / 'finetune_1_b16')
    again = subprocess.run([sys.executable, 'scripts/small_data_table.py', str(run)], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split('Fine-tuning top-1')[1] == done.stdout.split('Fine-tuning top-1')[1]
    # a cell of one seed (REPEATS=1) shows no sd, and the header says how many seeds each has
    path = run / 'cmd' / 'finetune_1' / 'results.json'
    result = json.loads(path.read_text())
    result['runs'] = result['runs'][:1]
    result['accuracy'].update(top1_mean=result['runs'][0]['accuracy']['top1'], top1_std=0.0)
    path.write_text(json.dumps(result))
    one = subprocess.run([sys.executable, 'scripts/small_data_table.py', str(run)], cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout.split('Fine-tuning top-1')[1]
    assert ', last epoch, mean +- sd over 1/2 seeds' in one
    assert f"| {result['accuracy']['top1_mean']:.1f} (1 seed) |" in one


def test_the_transfer_rows(tmp_path, rng):
    """--transfer: each dataset's encoders on the other, and on each a pooled pretraining in its skeleton."""
    first, env = _mine(tmp_path, rng)
    second, _ = _mine(tmp_path, rng, 'other')
    done = subprocess.run(['bash', 'scripts/small_data_table.sh', '--method', 'cmd', '--transfer', f'{first}:b',
                           f'{second}:b'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / 'out'
    for target, other in ((first, second), (second, first)):
        pooled = json.loads((out / f'pooled_{target.name}_b' / 'cmd' / 'pretrain' / 'args.json').read_text())
        assert pooled['pool'] == [f'{other}:b'] and pooled['data_root'] == str(target)
    on_the_pool = json.loads((out / 'other_b' / 'pooled__cmd' / 'knn' / 'results.json').read_text())
    assert on_the_pool['checkpoint'] == str(out / 'pooled_other_b' / 'cmd' / 'pretrain' / 'checkpoint.pth')
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in done.stdout.splitlines()
            if line.startswith(('| mine_b |', '| other_b |'))]
    described = {(row[0], row[1]) for row in rows}
    assert {('mine_b', 'cmd, pretrained on other_b'), ('other_b', 'cmd, pretrained on mine_b'),
            ('mine_b', 'cmd, pretrained on the pool'), ('other_b', 'cmd, pretrained on the pool')} <= described
    from_other = json.loads((out / 'mine_b' / 'from__other_b__cmd' / 'knn' / 'results.json').read_text())
    assert from_other['checkpoint'] == str(out / 'other_b' / 'cmd' / 'pretrain' / 'checkpoint.pth')
    row = next(r for r in rows if r[:2] == ['mine_b', 'cmd, pretrained on other_b'])
    assert row[5] == f"{from_other['accuracy']['fused']['top1@k=1']:.1f}"


def _chain_layout(tmp_path, joints):
    names = [f'j{v}' for v in range(joints)]
    path = tmp_path / 'chain.json'
    path.write_text(json.dumps({'name': 'chain', 'joints': names, 'parents': {names[v]: names[v - 1] for v in
                                range(1, joints)}, 'center': 'j0', 'up': ['j0', 'j3'], 'across': ['j4', 'j5']}))
    return path
