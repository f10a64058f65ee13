import json
import os
import pickle
import platform
import subprocess
import sys

import numpy as np
import pytest

from feeder.layouts import NTU25
from feeder.raw import prepare as prep
from feeder.raw.normalize import mark_missing, normalize_pose_data, select_bodies
from feeder.raw.synthetic import generate
from tests.conftest import random_body, write_skeleton
from tests.reference import prepare_file, read_skeleton_filter

# (name, train in xsub, train in xview)
NTU_FILES = [
    ('S001C001P001R001A001', True, False),
    ('S001C002P003R001A002', False, True),
    ('S002C003P008R002A060', True, True),
    ('S017C001P040R001A010', False, False),
    ('S003C002P004R001A005', True, True),
    ('S004C003P006R002A007', False, True),
]


def _write_ntu(raw, rng, names, bodies=2):
    for i, name in enumerate(names):
        frames = int(rng.integers(20, 60))
        people = [random_body(rng, frames, offset=(k, 0, 3)) for k in range(bodies if i % 2 else 1)]
        frame_list = [[p[t] for p in people] for t in range(frames)]
        if i == 2:
            frame_list[:3] = [[]] * 3  # late start
        write_skeleton(raw / f'{name}.skeleton', frame_list, crlf=bool(i % 3 == 0))


def _run(*argv):
    return prep.main([str(a) for a in argv] + ['--quiet'])


def _load(out, benchmark, part):
    folder = out / benchmark
    data = np.load(folder / f'{part}_data_joint.npy')
    frames = np.load(folder / f'{part}_num_frame.npy')
    with open(folder / f'{part}_label.pkl', 'rb') as f:
        names, labels = pickle.load(f)
    return data, frames, names, labels


@pytest.fixture
def ntu_raw(tmp_path, rng):
    raw = tmp_path / 'raw'
    (raw / 'nested').mkdir(parents=True)
    _write_ntu(raw, rng, [n for n, _, _ in NTU_FILES[:3]])
    _write_ntu(raw / 'nested', rng, [n for n, _, _ in NTU_FILES[3:]])
    # NTU-120-only files and foreign files are left out of ntu60
    _write_ntu(raw, rng, ['S018C001P001R001A001', 'S001C001P001R001A061'])
    (raw / 'readme.txt').write_text('not a skeleton')
    return raw


@pytest.mark.parametrize('workers', [0, 2])
def test_ntu60_end_to_end_matches_published_pipeline(tmp_path, ntu_raw, workers):
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--workers', workers) == 0
    paths = {p.stem: p for p in ntu_raw.rglob('*.skeleton')}
    for benchmark, column in (('xsub', 1), ('xview', 2)):
        for part in ('train', 'val'):
            data, frames, names, labels = _load(out, benchmark, part)
            expected = sorted(n for n, *split in NTU_FILES if split[column - 1] == (part == 'train'))
            assert names == expected
            assert labels == [int(n[-3:]) - 1 for n in names]
            assert data.shape == (len(names), 3, 300, 25, 2) and data.dtype == np.float32
            for i, name in enumerate(names):
                ref, length = prepare_file(str(paths[name]))
                assert frames[i] == length
                assert np.abs(data[i] - ref).max() <= 1e-4
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert summary['samples']['xsub/train'] == 3
    assert sorted(summary['skipped']['not part of ntu60']) == ['S001C001P001R001A061', 'S018C001P001R001A001']
    assert not [p for p in os.listdir(out) if p.startswith('.')]


@pytest.mark.parametrize('official', [True, False])
def test_ignore_list(tmp_path, ntu_raw, official):
    listing = tmp_path / 'missing.txt'
    header = ('The following samples have missing skeletons.\nPlease ignore them.\n\n' if official else '')
    listing.write_text(header + 'S001C001P001R001A001\nS002C003P008R002A060\n')
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--ignore-list', listing) == 0
    names = _load(out, 'xsub', 'train')[2] + _load(out, 'xsub', 'val')[2]
    assert sorted(names) == sorted(n for n, *_ in NTU_FILES if n not in ('S001C001P001R001A001', 'S002C003P008R002A060'))


def test_ignore_list_without_names_is_an_error(tmp_path, ntu_raw, capsys):
    listing = tmp_path / 'empty.txt'
    listing.write_text('nothing to see here\n')
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', tmp_path / 'o', '--ignore-list', listing) == 1
    assert 'no sample names' in capsys.readouterr().err


def test_ntu120_splits(tmp_path, rng):
    raw = tmp_path / 'raw'
    raw.mkdir()
    names = ['S001C001P001R001A001', 'S018C001P045R001A100', 'S019C002P046R001A120', 'S020C001P106R001A061']
    _write_ntu(raw, rng, names)
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu120', '--raw-dir', raw, '--out-dir', out, '--workers', 0) == 0
    assert _load(out, 'xsub', 'train')[2] == ['S001C001P001R001A001', 'S018C001P045R001A100', 'S019C002P046R001A120']
    assert _load(out, 'xsetup', 'train')[2] == ['S018C001P045R001A100', 'S020C001P106R001A061']
    assert _load(out, 'xsetup', 'val')[3] == [0, 119]


def test_empty_split_is_an_error(tmp_path, rng, capsys):
    raw = tmp_path / 'raw'
    raw.mkdir()
    _write_ntu(raw, rng, ['S001C002P001R001A001', 'S001C003P002R001A002'])  # all train subjects
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', raw, '--out-dir', out) == 1
    err = capsys.readouterr().err
    assert 'no samples for xsub/val, xview/val' in err
    assert not out.exists() or not any(out.iterdir())


def _break(path):
    lines = open(path).read().split('\n')
    open(path, 'w').write('\n'.join(lines[:30]))


def test_bad_file_stops_and_keeps_previous_output(tmp_path, ntu_raw, capsys):
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--workers', 0) == 0
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    bad = ntu_raw / 'nested' / 'S004C003P006R002A007.skeleton'
    _break(bad)
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--workers', 2) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and 'line 30' in err and '--skip-bad' in err
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
    assert not [p for p in os.listdir(out) if p.startswith('.')]


def test_skip_bad_leaves_the_file_out(tmp_path, ntu_raw):
    bad = ntu_raw / 'S002C003P008R002A060.skeleton'
    _break(bad)
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--skip-bad') == 0
    data, frames, names, labels = _load(out, 'xsub', 'train')
    assert names == ['S001C001P001R001A001', 'S003C002P004R001A005']
    paths = {p.stem: p for p in ntu_raw.rglob('*.skeleton')}
    for i, name in enumerate(names):
        ref, length = prepare_file(str(paths[name]))
        assert frames[i] == length and np.abs(data[i] - ref).max() <= 1e-4
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert any(str(bad) in entry for entry in summary['skipped']['bad file'])


def test_rerun_replaces_output(tmp_path, ntu_raw):
    out = tmp_path / 'out'
    (out / 'xsub').mkdir(parents=True)
    (out / 'xsub' / 'stale.npy').write_bytes(b'old')
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 0
    assert not (out / 'xsub' / 'stale.npy').exists()
    assert sorted(os.listdir(out)) == ['dataset.json', 'prepare_summary.json', 'xsub', 'xview']


def test_missing_raw_dir(tmp_path, capsys):
    assert _run('--dataset', 'ntu60', '--raw-dir', tmp_path / 'nope', '--out-dir', tmp_path / 'o') == 1
    assert 'not a folder' in capsys.readouterr().err


# ----------------------------------------------------------------------------- PKU-MMD

def _write_pku(raw, rng, videos, v2=True):
    (raw / 'skeleton').mkdir(parents=True)
    (raw / 'label').mkdir()
    for video, length, actions in videos:
        body = random_body(rng, length).reshape(length, 75)
        other = np.zeros((length, 75))
        other[length // 2:] = random_body(rng, length - length // 2, offset=(1, 0, 3)).reshape(-1, 75)
        np.savetxt(raw / 'skeleton' / f'{video}.txt', np.concatenate([body, other], 1), fmt='%.6f')
        (raw / 'label' / f'{video}.txt').write_text(''.join(f'{c},{s},{e},1\n' for c, s, e in actions))
    suffix = '_v2' if v2 else ''
    (raw / f'cross_subject{suffix}.txt').write_text('Training videos:\n0002-L, 0002-M\nValidation videos:\n0291-L\n')
    (raw / f'cross_view{suffix}.txt').write_text('Training videos:\n0002-M, 0291-L\n')


@pytest.mark.parametrize('dataset', ['pku1', 'pku2'])
def test_pku(tmp_path, rng, dataset):
    raw = tmp_path / 'raw'
    videos = [('0002-L', 400, [(3, 10, 60), (51, 60, 420)]), ('0002-M', 100, [(1, 0, 40)]),
              ('0291-L', 90, [(7, 5, 90), (2, 20, 30)])]
    _write_pku(raw, rng, videos, v2=dataset == 'pku2')
    out = tmp_path / 'out'
    assert _run('--dataset', dataset, '--raw-dir', raw, '--out-dir', out, '--workers', 2) == 0
    data, frames, names, labels = _load(out, 'xsub', 'train')
    assert names == ['0002-L.txt_0', '0002-L.txt_1', '0002-M.txt_0']
    assert labels == [2, 50, 0]
    # the second action runs past the video's end (400 frames): its length is what exists
    assert frames.tolist() == [50, 340, 40]
    assert _load(out, 'xsub', 'val')[2] == ['0291-L.txt_0', '0291-L.txt_1']
    assert _load(out, 'xview', 'val')[2] == ['0002-L.txt_0', '0002-L.txt_1']
    # the stored clip is the normalised slice: recompute the first from the raw file
    raw_video = np.loadtxt(raw / 'skeleton' / '0002-L.txt', dtype=np.float32).reshape(-1, 2, 25, 3)
    clip = np.zeros((1, 3, 300, 25, 2), dtype=np.float32)
    clip[0, :, :50] = raw_video[10:60].transpose(3, 0, 2, 1)
    from tests.reference import pre_normalization
    np.testing.assert_allclose(data[0], pre_normalization(clip)[0], atol=1e-5)
    assert data.shape[1:] == (3, 300, 25, 2)


# ----------------------------------------------------------------------------- NW-UCLA

def _write_ucla(raw, rng, entries):
    (raw / 'all_sqe').mkdir(parents=True)
    for name, frames in entries:
        body = random_body(rng, frames, joints=20)
        record = {'file_name': name, 'skeletons': body.tolist(), 'label': 0}
        (raw / 'all_sqe' / f'{name}.json').write_text(json.dumps(record))


def test_ucla(tmp_path, rng, capsys):
    raw = tmp_path / 'raw'
    _write_ucla(raw, rng, [('a01_s01_e00_v01', 30), ('a12_s02_e01_v02', 420), ('a08_s03_e00_v03', 25),
                           ('a11_s01_e02_v03', 1), ('a05_s01_e00_v01', 40), ('a02_s09_e00_v02', 20)])
    out = tmp_path / 'out'
    assert _run('--dataset', 'ucla', '--raw-dir', raw, '--out-dir', out) == 0
    data, frames, names, labels = _load(out, 'xview', 'train')
    assert names == ['a01_s01_e00_v01', 'a02_s09_e00_v02', 'a05_s01_e00_v01', 'a12_s02_e01_v02']
    assert labels == [0, 1, 4, 9]
    assert frames.tolist() == [30, 20, 40, 300]  # longer clips are resampled to 300 frames
    assert data.shape == (4, 3, 300, 20, 1)
    assert _load(out, 'xview', 'val')[2:] == (['a08_s03_e00_v03'], [6])
    # the validation benchmark: the training views split by subject (8-10 validate), view 3 unused
    assert _load(out, 'xview_dev', 'train')[2] == ['a01_s01_e00_v01', 'a05_s01_e00_v01', 'a12_s02_e01_v02']
    assert _load(out, 'xview_dev', 'val')[2] == ['a02_s09_e00_v02']
    hip_to_spine = data[0, :, 0, 1, 0] - data[0, :, 0, 0, 0]
    assert hip_to_spine[2] / np.linalg.norm(hip_to_spine) > 0.9
    np.testing.assert_allclose(data[:, 1:, 0, 8, 0] - data[:, 1:, 0, 4, 0], 0, atol=1e-5)
    assert np.all(data[:, :, :, 1, 0] == 0)  # centred on joint 1 in every frame
    summary = capsys.readouterr().out
    assert 'too short: 1' in summary and 'a11_s01_e02_v03' in summary


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_files_are_genuine_ntu_format(tmp_path):
    raw = tmp_path / 'raw'
    names = generate(str(raw), classes=12, subjects=3, cameras=3, replications=1, seed=1)
    assert len(names) == 3 * 3 * 12
    info = read_skeleton_filter(str(raw / f'{names[0]}.skeleton'))
    body = info['frameInfo'][-1]['bodyInfo'][0]
    assert len(body) == 12 and len(body['jointInfo']) == 25 and len(body['jointInfo'][0]) == 12
    out = tmp_path / 'out'
    assert _run('--dataset', 'synthetic', '--raw-dir', raw, '--out-dir', out, '--workers', 2) == 0
    data, frames, names, labels = _load(out, 'xview', 'train')
    assert sorted(set(labels)) == list(range(12)) and len(names) == 3 * 2 * 12
    # classes differ in kinematics: mean clips of different classes are far apart
    means = np.stack([data[np.array(labels) == c, :, :64].mean(0) for c in range(12)])
    gaps = np.linalg.norm((means[:, None] - means[None]).reshape(12, 12, -1), axis=-1)
    assert gaps[~np.eye(12, dtype=bool)].min() > 1.0
    # two-person classes carry a second body
    assert np.abs(data[np.array(labels) == 10][..., 1]).sum() > 0
    assert np.abs(data[np.array(labels) == 0][..., 1]).sum() == 0


def test_interrupted_run_leaves_previous_output_and_no_staging(tmp_path, ntu_raw, monkeypatch):
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--workers', 0) == 0
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    calls = []

    def interrupt(sample, layout):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return sample
    monkeypatch.setattr('feeder.raw.writer.normalize_sample', interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--workers', 0)
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
    assert sorted(os.listdir(out)) == ['dataset.json', 'prepare_summary.json', 'xsub', 'xview']


def test_duplicate_and_foreign_names(tmp_path, ntu_raw, rng, capsys):
    (ntu_raw / 'notes.skeleton').write_text('1\n0\n')
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 0
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert [os.path.basename(p) for p in summary['skipped']['name not in NTU format']] == ['notes.skeleton']
    (ntu_raw / 'copy').mkdir()
    _write_ntu(ntu_raw / 'copy', rng, ['S001C001P001R001A001'])
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 1
    assert 'S001C001P001R001A001 appears twice' in capsys.readouterr().err


def test_pku_videos_without_skeleton_or_split_are_listed(tmp_path, rng):
    raw = tmp_path / 'raw'
    _write_pku(raw, rng, [('0002-L', 100, [(3, 10, 60)]), ('0002-M', 100, [(1, 0, 40)]), ('0291-L', 90, [(7, 5, 90)])])
    (raw / 'label' / '0300-R.txt').write_text('1,0,10,1\n')  # no skeleton file
    out = tmp_path / 'out'
    assert _run('--dataset', 'pku2', '--raw-dir', raw, '--out-dir', out) == 0
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert summary['skipped']['label file without skeleton file'] == ['0300-R']
    os.remove(raw / 'cross_view_v2.txt')
    assert _run('--dataset', 'pku2', '--raw-dir', raw, '--out-dir', out) == 1


# ----------------------------------------------------------------------------- bad data and leftovers

def _set_field(path, line, value):
    """Replace the first number on 1-based ``line`` of a text file."""
    lines = path.read_text().split('\n')
    fields = lines[line - 1].split(' ')
    lines[line - 1] = ' '.join([value] + fields[1:])
    path.write_text('\n'.join(lines))


@pytest.mark.parametrize('value', ['nan', 'inf', '-inf'])
def test_non_finite_ntu_coordinates_name_file_and_line(tmp_path, ntu_raw, capsys, value):
    bad = ntu_raw / 'S002C003P008R002A060.skeleton'
    _set_field(bad, 12, value)  # frame 0 is empty in this file: line 12 is a joint of a later frame
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 1
    err = capsys.readouterr().err
    assert f'{bad}, line 12: joint coordinate {value!r} is not finite' in err
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--skip-bad') == 0
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert [e for e in summary['skipped']['bad file'] if str(bad) in e and 'line 12' in e]
    assert 'S002C003P008R002A060' not in _load(out, 'xsub', 'train')[2]


def test_non_finite_ucla_coordinates_name_file_and_line(tmp_path, rng, capsys):
    raw = tmp_path / 'raw'
    _write_ucla(raw, rng, [('a01_s01_e00_v01', 30), ('a08_s03_e00_v03', 25), ('a05_s09_e00_v01', 40)])
    path = raw / 'all_sqe' / 'a01_s01_e00_v01.json'
    record = json.loads(path.read_text())
    record['skeletons'][4][7][1] = float('nan')
    path.write_text(json.dumps(record, indent=1))  # json writes NaN, and reads it back
    assert _run('--dataset', 'ucla', '--raw-dir', raw, '--out-dir', tmp_path / 'out') == 1
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().split('\n'), 1) if 'NaN' in text)
    assert f'{path}, line {line}: frame 4, joint 7: coordinate is not finite' in err


def test_files_without_a_body_are_left_out_and_counted(tmp_path, ntu_raw, capsys):
    empty = ntu_raw / 'nested' / 'S003C002P004R001A005.skeleton'
    write_skeleton(empty, [[] for _ in range(40)])  # 40 frames, none with a body
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 0
    assert 'skipped, no body: 1 (S003C002P004R001A005)' in capsys.readouterr().out
    assert 'S003C002P004R001A005' not in _load(out, 'xsub', 'train')[2]
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert summary['skipped']['no body'] == ['S003C002P004R001A005']
    assert summary['samples']['xsub/train'] == 2


def test_leftovers_of_killed_runs_are_cleaned_and_failures_leave_nothing(tmp_path, ntu_raw):
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 0
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    live = os.getppid()
    for name in (f'.prepare-{dead}', f'xsub.old-{dead}', f'.prepare-{live}'):
        (out / name).mkdir()
        (out / name / 'train_data_joint.npy').write_bytes(b'x' * 100)
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out) == 0
    assert sorted(p for p in os.listdir(out) if '-' in p) == [f'.prepare-{live}']  # a live run's is kept
    # a first run that fails leaves no folder behind; an --out-dir that is a file is an error
    _break(ntu_raw / 'S002C003P008R002A060.skeleton')
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', tmp_path / 'new') == 1
    assert not (tmp_path / 'new').exists()
    (tmp_path / 'file').write_text('')
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', tmp_path / 'file') == 1


def test_ntu_in_2d_reads_the_colour_coordinates(tmp_path, ntu_raw):
    out = tmp_path / 'out'
    assert _run('--dataset', 'ntu60', '--raw-dir', ntu_raw, '--out-dir', out, '--coords', '2d') == 0
    info = json.loads((out / 'dataset.json').read_text())
    assert info['dataset'] == 'ntu60' and info['channels'] == 'xy'
    data, frames, names, _ = _load(out, 'xsub', 'train')
    assert data.shape[1:] == (2, 300, 25, 2)
    path = next(ntu_raw.rglob(f'{names[0]}.skeleton'))
    record = read_skeleton_filter(str(path))
    colour = np.zeros((4, record['numFrame'], 25, 2))
    for t, frame in enumerate(record['frameInfo']):
        for b, body in enumerate(frame['bodyInfo'][:4]):
            colour[b, t] = [(j['colorX'], j['colorY']) for j in body['jointInfo']]
    points, _, present = mark_missing(select_bodies(colour, keep=2))
    expected = normalize_pose_data(points, present, NTU25)
    np.testing.assert_allclose(data[0, :, :frames[0]].transpose(3, 1, 2, 0)[:len(expected)], expected, atol=1e-4)
    assert _run('--dataset', 'ucla', '--raw-dir', ntu_raw, '--out-dir', out, '--coords', '2d') == 2


KEEP_CHECK = """
import sys
import numpy as np
from feeder.raw.writer import keep_freed_memory
if sys.argv[1] == 'keep':
    keep_freed_memory()
def resident():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
before = resident()
block = np.ones(2 << 20)   # 16 MB
del block
print(resident() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='a glibc setting')
def test_workers_keep_the_memory_they_free():
    def kept(mode):
        out = subprocess.run([sys.executable, '-c', KEEP_CHECK, mode], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return int(out.stdout) / 2 ** 20
    assert kept('default') < 4 and kept('keep') > 12
