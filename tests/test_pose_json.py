"""Pose estimators' own files in: OpenPose per-frame JSON and Kinetics-skeleton JSON
(feeder/raw/pose_json.py), the tracker that links their untracked people
(feeder/raw/tracking.py), and bad files with and without --skip-bad."""
import json
import os
import pickle

import numpy as np
import pytest

from feeder.raw import prepare as prep
from feeder.raw.custom import detect_format
from feeder.raw.synthetic import pose_annotations, write_kinetics, write_openpose
from feeder.raw.tracking import link_tracks, tracks_to_array
from utils import safe_pickle

SIZES = dict(classes=4, subjects=3, cameras=2, replications=1)


def _prepare(*argv):
    return prep.main([str(a) for a in argv] + ['--quiet', '--workers', '0'])


def _prepared(out, benchmark, part):
    names, labels = safe_pickle.load(out / benchmark / f'{part}_label.pkl', safe_pickle.NUMPY_ARRAYS)
    data = np.load(out / benchmark / f'{part}_data_joint.npy')
    frames = np.load(out / benchmark / f'{part}_num_frame.npy')
    return {n: (d, int(label), int(f)) for n, d, label, f in zip(names, data, labels, frames)}


@pytest.fixture(scope='module')
def pickle_oracle(tmp_path_factory):
    """The same synthetic clips through the pickle path, each clip's persons in the order they are
    first seen: untracked files carry no other order, and normalisation centres on person 0."""
    tmp = tmp_path_factory.mktemp('oracle')
    annotations, split = pose_annotations('2d', **SIZES)
    for record in annotations:
        first = (record['keypoint_score'] > 0).any(-1).argmax(1)
        order = np.argsort(first, kind='stable')
        record['keypoint'], record['keypoint_score'] = record['keypoint'][order], record['keypoint_score'][order]
    with open(tmp / 'poses.pkl', 'wb') as f:
        pickle.dump({'split': split, 'annotations': annotations}, f)
    assert _prepare('--dataset', 'custom', '--annotations', tmp / 'poses.pkl', '--layout', 'coco17',
                    '--out-dir', tmp / 'out') == 0
    return tmp / 'out'


def test_openpose_folders_give_the_pickle_arrays(tmp_path, pickle_oracle):
    write_openpose(str(tmp_path / 'openpose'), **SIZES)
    assert detect_format(str(tmp_path / 'openpose')) == 'openpose'
    # frames where nobody was detected have no file: the numbering has gaps the reader must keep
    gaps = [name for name in os.listdir(tmp_path / 'openpose') if os.path.isdir(tmp_path / 'openpose' / name)
            and len(os.listdir(tmp_path / 'openpose' / name)) < 1 + max(
                int(f.split('_')[-2]) for f in os.listdir(tmp_path / 'openpose' / name))]
    assert gaps
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'openpose', '--layout', 'coco17',
                    '--out-dir', tmp_path / 'out') == 0
    record = json.loads((tmp_path / 'out' / 'dataset.json').read_text())
    assert record['class_names'][:2] == ['raise left arm', 'wave right hand']
    assert record['preparation']['format'] == 'openpose'
    for benchmark, part in (('xsub', 'train'), ('xsub', 'val'), ('xview', 'train'), ('xview', 'val')):
        ours, oracle = _prepared(tmp_path / 'out', benchmark, part), _prepared(pickle_oracle, benchmark, part)
        assert ours.keys() == oracle.keys()
        for name, (data, label, frames) in oracle.items():
            assert ours[name][1:] == (label, frames), name
            np.testing.assert_allclose(ours[name][0], data, rtol=0, atol=1e-6, err_msg=name)


def test_kinetics_files_with_image_size_give_the_pickle_arrays(tmp_path, pickle_oracle):
    write_kinetics(str(tmp_path / 'kinetics'), **SIZES)
    assert detect_format(str(tmp_path / 'kinetics')) == 'kinetics-json'
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'kinetics', '--layout', 'coco17',
                    '--image-size', 1920, 1080, '--out-dir', tmp_path / 'out') == 0
    record = json.loads((tmp_path / 'out' / 'dataset.json').read_text())
    assert record['benchmarks'].keys() == {'xsub'} and record['num_classes'] == 4
    assert record['class_names'][3] == 'squat' and record['preparation']['image_size'] == [1920, 1080]
    for part in ('train', 'val'):
        ours, oracle = _prepared(tmp_path / 'out', 'xsub', part), _prepared(pickle_oracle, 'xsub', part)
        assert ours.keys() == oracle.keys()
        for name, (data, label, frames) in oracle.items():
            assert ours[name][1:] == (label, frames), name
            np.testing.assert_allclose(ours[name][0], data, rtol=1e-5, atol=1e-5, err_msg=name)


def test_kinetics_labels_come_from_the_files_without_a_label_file(tmp_path):
    write_kinetics(str(tmp_path / 'k'), **SIZES)
    expected = {}
    for part in ('train', 'val'):
        expected.update({n: v['label_index'] for n, v in
                         json.loads((tmp_path / 'k' / f'xsub_{part}_label.json').read_text()).items()})
        os.remove(tmp_path / 'k' / f'xsub_{part}_label.json')
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'k', '--layout', 'coco17',
                    '--out-dir', tmp_path / 'out') == 0
    got = {**_prepared(tmp_path / 'out', 'xsub', 'train'), **_prepared(tmp_path / 'out', 'xsub', 'val')}
    assert {n: v[1] for n, v in got.items()} == expected
    assert json.loads((tmp_path / 'out' / 'dataset.json').read_text())['num_classes'] == 4


def test_kinetics_label_mismatch_names_the_file(tmp_path, capsys):
    write_kinetics(str(tmp_path / 'k'), **SIZES)
    labels = json.loads((tmp_path / 'k' / 'xsub_train_label.json').read_text())
    name = sorted(labels)[0]
    labels[name]['label_index'] = (labels[name]['label_index'] + 1) % 4
    (tmp_path / 'k' / 'xsub_train_label.json').write_text(json.dumps(labels))
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'k', '--layout', 'coco17',
                    '--out-dir', tmp_path / 'out') == 1
    err = capsys.readouterr().err
    assert f'{name}.json' in err and 'but the label file says' in err and len(err.strip().splitlines()) == 1


def test_the_tracker_keeps_two_crossing_people_apart():
    """Two identical figures walk towards each other along one line, meet at frame 20 and go on
    past each other, listed in either order, with joints missed and two frames lost: only their
    motion tells them apart after they meet."""
    figure = np.array([(0, -150), (-30, -100), (30, -100), (-40, 0), (40, 0), (-20, 160), (20, 160)], float)
    a = np.stack([figure + (100 + 10 * t, 300) for t in range(40)])
    b = np.stack([figure + (500 - 10 * t, 300) for t in range(40)])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        frames = []
        for t in range(40):
            people = []
            for truth in (a[t], b[t]):
                score = rng.uniform(0.5, 1, 7)
                score[rng.random(7) < 0.2] = 0
                people.append((truth + rng.normal(0, 1, truth.shape), score))
            frames.append([] if t in (16, 17) else people[::rng.choice((1, -1))])
        tracks = link_tracks(frames)
        assert len(tracks) == 2
        keypoint, score = tracks_to_array(tracks, 40, 7)
        assert not (score[:, 16:18] > 0).any()
        for m in range(2):  # each track stays with the figure it began with
            seen = score[m] > 0
            truth = a if np.abs(keypoint[m, 0] - a[0])[seen[0]].max() < 10 else b
            assert np.abs(keypoint[m] - truth)[seen].max() < 10, f'seed {seed}: track {m} took the other figure'


def test_a_track_ends_after_the_gap_tolerance():
    figure = np.array([(0, 0), (10, 40), (-10, 40)]) + (100, 100.0)
    seen = np.ones(3)
    frames = [[(figure, seen)]] * 3 + [[]] * 11 + [[(figure, seen)]] * 3
    assert [len(t) for t in link_tracks(frames)] == [3, 3]
    assert [len(t) for t in link_tracks(frames, max_gap=11)] == [6]


def _openpose_frame(path, people):
    path.write_text(json.dumps({'version': 1.3, 'people': [{'person_id': [-1], 'pose_keypoints_2d': p} for p in people]}))


def test_bad_json_files_stop_the_run_or_are_skipped(tmp_path, capsys):
    root = tmp_path / 'op'
    rng = np.random.default_rng(1)
    for video in ('good', 'notjson', 'short'):
        (root / video).mkdir(parents=True)
        for t in range(6):
            _openpose_frame(root / video / f'{video}_{t:012d}_keypoints.json',
                            [(rng.uniform(10, 100, (25, 3))).ravel().tolist()])
    (root / 'notjson' / 'notjson_000000000003_keypoints.json').write_text('{"people": [')
    _openpose_frame(root / 'short' / 'short_000000000002_keypoints.json', [[1.0] * 54])
    (root / 'empty').mkdir()
    for t in range(4):  # a video without a single detection
        _openpose_frame(root / 'empty' / f'empty_{t:012d}_keypoints.json', [])
    argv = ['--dataset', 'custom', '--annotations', root, '--layout', 'openpose25', '--out-dir', tmp_path / 'out']
    assert _prepare(*argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and '2 bad file(s)' in err and 'notjson_000000000003_keypoints.json' in err
    assert _prepare(*argv, '--skip-bad') == 0
    summary = json.loads((tmp_path / 'out' / 'prepare_summary.json').read_text())
    assert summary['samples'] == {'all/train': 1}
    assert summary['skipped']['no body'] == ['empty']
    bad = summary['skipped']['bad file']
    assert any('notjson_000000000003_keypoints.json' in b and 'not JSON' in b for b in bad)
    assert any('short_000000000002_keypoints.json' in b and 'expected 75 numbers, found 54' in b for b in bad)


def test_bad_npy_clips_are_skipped_too(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for i in range(4):
        np.save(tmp_path / f'c{i}.npy', rng.normal(size=(20, 17, 2)).astype(np.float32))
    np.save(tmp_path / 'wrong.npy', rng.normal(size=(20, 25, 2)).astype(np.float32))
    (tmp_path / 'broken.npy').write_bytes(b'not an array')
    argv = ['--dataset', 'custom', '--annotations', tmp_path, '--layout', 'coco17', '--out-dir', tmp_path / 'out']
    assert _prepare(*argv) == 1
    assert 'broken.npy: not a plain numeric .npy array' in capsys.readouterr().err
    np.save(tmp_path / 'flat.npy', rng.normal(size=(20, 17)).astype(np.float32))  # a shape no clip has
    assert _prepare(*argv, '--skip-bad') == 0
    summary = json.loads((tmp_path / 'out' / 'prepare_summary.json').read_text())
    assert summary['samples'] == {'all/train': 4}
    assert len(summary['skipped']['bad file']) == 3
    assert any('flat.npy: clip flat: expected keypoints' in b for b in summary['skipped']['bad file'])


def test_format_is_checked_against_the_path(tmp_path, capsys):
    (tmp_path / 'x.pkl').write_bytes(b'')
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'x.pkl', '--format', 'openpose',
                    '--layout', 'coco17', '--out-dir', tmp_path / 'out') == 1
    assert '--format openpose needs a folder' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'empty', '--layout', 'coco17',
                    '--out-dir', tmp_path / 'out') == 1
    assert 'holds no .npy clips, OpenPose video folders or Kinetics-skeleton files' in capsys.readouterr().err


def test_a_joint_that_is_not_finite_counts_as_missed(tmp_path):
    rng = np.random.default_rng(3)
    for video in ('a', 'b'):
        (tmp_path / 'op' / video).mkdir(parents=True)
        for t in range(5):
            points = rng.uniform(10, 100, (25, 3))
            if video == 'a' and t == 2:
                points[4] = (np.nan, 50.0, 0.9)
            _openpose_frame(tmp_path / 'op' / video / f'{video}_{t:012d}_keypoints.json', [points.ravel().tolist()])
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'op', '--layout', 'openpose25',
                    '--channels', 'xys', '--out-dir', tmp_path / 'out') == 0
    clips = _prepared(tmp_path / 'out', 'all', 'train')
    data = clips['a'][0]
    assert np.isfinite(data).all()
    assert data[2, 2, 4, 0] == 0 and data[2, 1, 4, 0] > 0  # its confidence 0 at that frame only
    assert not data[..., 1].any()  # and the person stays one track
