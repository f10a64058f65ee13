"""Timelines of long recordings (docs/protocols.md, "Timelines"): the windows against the prepared
clips, the segment rule, the synthetic untrimmed recordings, timeline.py's outputs and the detection
score (docs/protocols.md, "Temporal detection") against hand-computed cases."""
import csv
import io
import json
import os

import numpy as np
import pytest

import export
import linear_eval
import timeline
from evaluation.detection import average_precision, mean_average_precision, temporal_iou
from feeder.datasets import SkeletonFolder
from feeder.info import read_dataset_json
from feeder.raw import prepare as prep
from feeder.raw.readers import read_pku_labels, read_pku_split, read_pku_video
from feeder.synthetic import main as synthetic_cli
from recordings.read import read_recording
from recordings.segments import Segment, frame_labels, frame_scores, segments, smooth
from recordings.windows import Window, WindowPreparation, window_persons, window_starts
from tests.conftest import openpose_data, random_body


def test_temporal_iou_is_the_overlap_over_the_union():
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 10), (10, 20)) == 0.0 and temporal_iou((0, 10), (30, 40)) == 0.0
    assert temporal_iou((2, 4), (0, 10)) == pytest.approx(2 / 10)


def test_perfect_detections_score_one_at_every_threshold():
    truths = [('a', 0, 0, 50), ('a', 1, 60, 100), ('b', 0, 10, 40)]
    detections = [(r, c, s, e, 0.9) for r, c, s, e in truths]
    means, per_class = mean_average_precision(detections, truths)
    assert means == {0.1: 1.0, 0.3: 1.0, 0.5: 1.0, 0.7: 1.0} and per_class[0.5] == {0: 1.0, 1: 1.0}


def test_a_shifted_detection_is_lost_at_the_iou_it_crosses():
    truths = [('a', 0, 0, 100)]
    shifted = [('a', 0, 40, 140, 0.9)]  # IoU 60 / 140 = 0.43
    means, _ = mean_average_precision(shifted, truths)
    assert means == {0.1: 1.0, 0.3: 1.0, 0.5: 0.0, 0.7: 0.0}
    wrong_class = [('a', 1, 0, 100, 0.9)]
    assert mean_average_precision(wrong_class, truths)[0][0.1] == 0.0
    wrong_recording = [('b', 0, 0, 100, 0.9)]
    assert mean_average_precision(wrong_recording, truths)[0][0.1] == 0.0


def test_duplicates_are_false_positives_and_ranks_count():
    truths = {'a': [(0, 50), (100, 150)]}
    # ranked: the first truth (TP), the same again (FP), the second truth (TP): (1/1 + 2/3) / 2
    detections = [('a', 0, 50, 0.9), ('a', 2, 50, 0.8), ('a', 100, 150, 0.7)]
    assert average_precision(detections, truths, 0.5) == pytest.approx((1 + 2 / 3) / 2)
    # the duplicate after both truths costs nothing; a truth never found counts as 0
    assert average_precision(detections[:2] + [('a', 100, 150, 0.95)], truths, 0.5) == pytest.approx(1.0)
    assert average_precision([detections[0]], truths, 0.5) == pytest.approx(0.5)
    assert average_precision(detections, {}, 0.5) is None  # a class without truth is not averaged
    # a detection matches the unmatched truth it overlaps most
    close = {'a': [(0, 100), (90, 190)]}
    assert average_precision([('a', 85, 185, 0.9), ('a', 0, 95, 0.8)], close, 0.7) == pytest.approx(1.0)


# ---- timelines of long recordings (timeline.py, recordings/) ----

def test_frame_scores_average_the_windows_that_cover_each_frame():
    windows = [Window(0, 0, 4, np.array([1.0, 0.0])), Window(0, 2, 6, np.array([0.0, 1.0]))]
    scores, covered = frame_scores(windows, 8, 2)
    np.testing.assert_allclose(scores[:, 1], [0, 0, .5, .5, 1, 1, 0, 0])
    assert covered.tolist() == [True] * 6 + [False] * 2


def test_segments_follow_the_documented_rule():
    # a frame's label: its likeliest class, background where uncovered or below the threshold
    scores = np.array([[.9, .1]] * 6 + [[.2, .8]] * 2 + [[.9, .1]] * 6 + [[.45, .55]] * 6 + [[0, 0]] * 2)
    covered = np.array([True] * 20 + [False] * 2)
    assert frame_labels(scores, covered, 0.6).tolist() == [0] * 6 + [1] * 2 + [0] * 6 + [-1] * 8
    # the 2-frame run of class 1 is shorter than 3: it takes its longer neighbour's label, 0
    found, labels = segments(scores, covered, 0.6, 3)
    assert labels.tolist() == [0] * 14 + [-1] * 8
    assert found == [Segment(0, 14, 0, pytest.approx((12 * .9 + 2 * .2) / 14))]
    # shortest first, the earlier of equals; on a tie of neighbours the earlier one's label
    assert smooth(np.array([0, 0, 0, 1, 2, 2, 2, 2]), 2).tolist() == [0, 0, 0, 2, 2, 2, 2, 2]
    assert smooth(np.array([0, 0, 1, 2, 2]), 2).tolist() == [0, 0, 0, 2, 2]
    assert smooth(np.array([3]), 5).tolist() == [3]


def test_windows_cover_the_recording_to_its_last_frame():
    assert window_starts(100, 40, 10) == [0, 10, 20, 30, 40, 50, 60]
    assert window_starts(105, 40, 10) == [0, 10, 20, 30, 40, 50, 60, 65]
    assert window_starts(30, 40, 10) == []


@pytest.fixture(scope='module')
def untrimmed(tmp_path_factory):
    """Synthetic untrimmed recordings in the PKU-MMD layout, prepared as pku1, and a linear head on
    the prepared coordinates of x-view's training cameras (each stream, fused)."""
    root = tmp_path_factory.mktemp('untrimmed')
    assert synthetic_cli(['--untrimmed', '--out-dir', str(root / 'raw'), '--subjects', '3', '--cameras', '3']) == 0
    assert prep.main(['--dataset', 'pku1', '--raw-dir', str(root / 'raw'), '--out-dir', str(root / 'data'),
                      '--workers', '0', '--quiet']) == 0
    linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'pku1', '--data-root', str(root / 'data'), '--protocol', 'xview', '--checkpoint', 'raw',
         '--stream', 'all', '--workers', '0', '--device', 'cpu', '--quiet', '--output-dir',
         str(root / 'head')]))
    return root


def test_untrimmed_recordings_are_pku_mmd_files_of_known_performances(untrimmed):
    raw = untrimmed / 'raw'
    videos = sorted(f[:-4] for f in os.listdir(raw / 'skeleton'))
    assert videos == [f'{s:04d}-{c}' for s in (1, 2, 3) for c in 'LMR']
    train, val = read_pku_split(str(raw / 'split' / 'cross_view.txt'))
    assert sorted(train) == [v for v in videos if v[-1] in 'LR'] and sorted(val) == [v for v in videos if v[-1] == 'M']
    rows = 0
    for video in videos:
        bodies = read_pku_video(str(raw / 'skeleton' / f'{video}.txt'))
        labels = read_pku_labels(str(raw / 'label' / f'{video}.txt'))
        assert 4 <= len(labels) <= 7 and labels == read_pku_labels(str(raw / 'label' / f'{video[:4]}-M.txt'))
        ends = [0] + [end for _, _, end in labels]
        assert all(start >= end for (_, start, _), end in zip(labels, ends)) and ends[-1] < bodies.shape[1]
        # session 2 holds two persons throughout (its interactions among them), the others one
        two = (bodies[1] != 0).any((1, 2))
        assert two.all() if video.startswith('0002') else not two.any()
        if not video.startswith('0002'):
            assert all(label <= 10 for label, _, _ in labels)
        rows += len(labels)
    record = json.loads((untrimmed / 'data' / 'dataset.json').read_text())
    assert sum(record['benchmarks']['xview'].values()) == rows
    with pytest.raises(SystemExit):  # one line: the untrimmed recordings have one layout
        synthetic_cli(['--untrimmed', '--format', 'openpose', '--out-dir', str(untrimmed / 'other')])


def test_a_window_over_an_action_is_its_prepared_training_clip(untrimmed):
    folder = SkeletonFolder(str(untrimmed / 'data' / 'xview'), 'train')
    info = read_dataset_json(str(untrimmed / 'data' / 'dataset.json'))
    prepare = WindowPreparation.of(info)
    checked = 0
    for row, name in enumerate(folder.names):
        video, action = name.rsplit('_', 1)
        if video[:4] not in ('0001', '0002') or int(action) > 1:
            continue
        _, start, end = read_pku_labels(str(untrimmed / 'raw' / 'label' / video))[int(action)]
        recording = read_recording(str(untrimmed / 'raw' / 'skeleton' / video), info.layout)
        chosen = window_persons(recording, 0, start, end, info.persons, recording.present)
        window = prepare(recording.keypoint[chosen, start:end], None)
        np.testing.assert_array_equal(window, folder.clip(row).numpy())
        checked += 1
    assert checked == 8  # two actions of each of two sessions' two training cameras, one session with two persons


def test_a_window_of_own_pose_data_is_its_prepared_clip(tmp_path):
    """3D pose data with a recorded turn of the dataset, two persons, a missed joint: the window over
    a whole clip is the prepared clip."""
    rng = np.random.default_rng(4)
    clips = tmp_path / 'clips'
    clips.mkdir()
    for i in range(3):
        clip = np.stack([random_body(rng, 40, joints=17, motion=0.02),
                         random_body(rng, 40, joints=17, offset=(1, 0, 3))])
        clip[0, 5, 3] = 0
        np.save(clips / f'c{i}.npy', clip.astype(np.float32))
    (clips / 'labels.csv').write_text('name,label\nc0,0\nc1,1\nc2,0\n')
    assert prep.main(['--dataset', 'custom', '--annotations', str(clips), '--layout', 'h36m17', '--align', 'dataset',
                      '--out-dir', str(tmp_path / 'data'), '--workers', '0', '--quiet']) == 0
    info = read_dataset_json(str(tmp_path / 'data' / 'dataset.json'))
    assert info.preparation['align'] == 'dataset' and info.preparation['rotation']
    folder = SkeletonFolder(str(tmp_path / 'data' / 'all'), 'train')
    recording = read_recording(str(clips / 'c1.npy'), info.layout)
    chosen = window_persons(recording, 0, 0, 40, info.persons, recording.present)
    window = WindowPreparation.of(info)(recording.keypoint[chosen], None)
    np.testing.assert_allclose(window, folder.clip(folder.names.index('c1')).numpy(), atol=1e-6)


def run_timeline(*argv):
    return timeline.main(timeline.get_timeline_parser().parse_args([str(a) for a in argv] + ['--device', 'cpu']))


def test_timeline_of_a_recording_writes_windows_segments_and_a_picture(untrimmed, tmp_path, capsys):
    head, video = untrimmed / 'head' / 'heads.pth', untrimmed / 'raw' / 'skeleton' / '0002-M.txt'
    windows, _ = run_timeline('--checkpoint', head, '--recording', video, '--window', 48, '--out', tmp_path / 'w.csv',
                              '--segments', tmp_path / 's.csv', '--plot', tmp_path / 't.png',
                              '--truth', untrimmed / 'raw' / 'label' / '0002-M.txt')
    frames = read_pku_video(str(video)).shape[1]
    rows = list(csv.reader(open(tmp_path / 'w.csv')))
    assert rows[0] == ['person', 'start', 'end'] + [f'{c}{i}' for i in range(1, 6) for c in ('pred', 'prob')]
    # two persons, each window 48 frames, a quarter window apart, the last ending at the last frame
    starts = window_starts(frames, 48, 12)
    assert [(int(r[0]), int(r[1]), int(r[2])) for r in rows[1:]] == [(p, s, s + 48) for p in (0, 1) for s in starts]
    for row, window in zip(rows[1:], windows):
        probs = [float(p) for p in row[4::2]]
        assert probs == sorted(probs, reverse=True) and abs(probs[0] - window.probs.max()) < 1e-6
    segments_rows = list(csv.reader(open(tmp_path / 's.csv')))
    assert segments_rows[0] == ['person', 'start', 'end', 'label', 'score'] and len(segments_rows) > 2
    assert {int(r[0]) for r in segments_rows[1:]} == {0, 1} and (tmp_path / 't.png').stat().st_size > 0


def test_detection_protocol_finds_the_performances(untrimmed, tmp_path):
    results = run_timeline('--checkpoint', untrimmed / 'head' / 'heads.pth', '--dataset', 'pku1', '--raw-dir',
                           untrimmed / 'raw', '--protocol', 'xview', '--part', 'val', '--out-dir', tmp_path)
    assert json.loads((tmp_path / 'results.json').read_text())['map@0.5'] == results['map@0.5']
    assert {'map@0.1', 'map@0.3', 'map@0.5', 'map@0.7', 'frame_accuracy'} <= set(results)
    assert results['videos'] == 3
    assert results['map@0.1'] >= results['map@0.3'] >= results['map@0.5'] >= results['map@0.7']
    # the boundaries found against the truth: most performances found at IoU 0.3, many at 0.5 (the
    # idle stretches between them, which the classifier never saw, go to some action: threshold 0)
    assert results['map@0.3'] > 60 and results['map@0.5'] > 35 and results['frame_accuracy'] > 30


@pytest.fixture(scope='module')
def openpose_head(tmp_path_factory):
    """OpenPose folders of the synthetic performances (2D, untracked), prepared, and a linear head."""
    root = tmp_path_factory.mktemp('openpose')
    openpose_data(root)
    linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'custom', '--data-root', str(root / 'data'), '--protocol', 'xsub', '--checkpoint', 'raw',
         '--stream', 'all', '--epochs', '5', '--frames', '16', '--workers', '0', '--device', 'cpu', '--quiet',
         '--output-dir', str(root / 'head')]))
    return root


def _longest_video(folder):
    return max((folder / n for n in os.listdir(folder) if (folder / n).is_dir()), key=lambda p: len(os.listdir(p)))


def test_follow_mode_scores_the_windows_the_whole_recording_gives(openpose_head, tmp_path, capsys):
    head, video = openpose_head / 'head' / 'heads.pth', _longest_video(openpose_head / 'raw')
    offline, _ = run_timeline('--checkpoint', head, '--recording', video, '--window', 16, '--stride', 4)
    live, _ = run_timeline('--checkpoint', head, '--follow', video, '--window', 16, '--stride', 4, '--idle-exit', 0.2,
                           '--out', tmp_path / 'live.csv')
    assert 'frames read (0 unreadable, skipped)' in capsys.readouterr().out
    # the same windows (the offline run's extra one ends at the last frame), persons and scores
    offline = {(w.person, w.start): w for w in offline}
    assert live and all((w.person, w.start) in offline for w in live)
    assert len(offline) - len(live) <= len({w.person for w in offline.values()})
    for w in live:
        np.testing.assert_allclose(w.probs, offline[w.person, w.start].probs, atol=1e-5)
    assert len(list(csv.reader(open(tmp_path / 'live.csv')))) == len(live) + 1

    # a truncated frame, once a later one is there, is skipped and counted, not fatal
    files = sorted(f for f in os.listdir(video) if f.endswith('_keypoints.json'))
    broken = tmp_path / 'broken'
    broken.mkdir()
    for f in files:
        (broken / f).write_bytes((video / f).read_bytes())
    (broken / files[5]).write_text('{"version": 1.3, "people": [{"pose_keypoints_2d": [1.0, 2')
    with pytest.raises(ValueError, match='not JSON'):
        run_timeline('--checkpoint', head, '--recording', broken, '--window', 16)
    run_timeline('--checkpoint', head, '--follow', broken, '--window', 16, '--idle-exit', 0.2)
    assert '(1 unreadable, skipped)' in capsys.readouterr().out


def test_follow_reads_json_lines_on_standard_input(openpose_head, monkeypatch, capsys):
    video = _longest_video(openpose_head / 'raw')
    lines = [json.dumps(json.loads((video / f).read_text())) for f in sorted(os.listdir(video))]
    monkeypatch.setattr('sys.stdin', io.StringIO('\n'.join(lines[:10] + ['{"people": [tru'] + lines[10:]) + '\n'))
    live, _ = run_timeline('--checkpoint', openpose_head / 'head' / 'heads.pth', '--follow', '-', '--window', 16)
    out = capsys.readouterr().out
    assert f'{len(lines) + 1} frames read (1 unreadable, skipped)' in out and live
    assert f'person {live[0].person} frames 0-16: ' in out and ' ms)' in out


def test_bad_input_gets_one_clear_line(openpose_head, untrimmed, tmp_path):
    head, video = openpose_head / 'head' / 'heads.pth', _longest_video(openpose_head / 'raw')
    with pytest.raises(ValueError, match=r'frames, shorter than one window \(--window 300\)'):
        run_timeline('--checkpoint', head, '--recording', video, '--window', 300)
    with pytest.raises(ValueError, match="--layout ntu25 .25 joints. does not match the classifier's layout coco17"):
        run_timeline('--checkpoint', head, '--recording', video, '--layout', 'ntu25')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='expected a folder of OpenPose frames'):
        run_timeline('--checkpoint', head, '--recording', tmp_path / 'empty')
    with pytest.raises(ValueError, match='confidence of 25 joints.: expected 75 numbers, found 51'):
        run_timeline('--checkpoint', untrimmed / 'head' / 'heads.pth', '--recording', video)
    np.save(tmp_path / 'rig.npy', np.ones((80, 17, 3), dtype=np.float32))
    with pytest.raises(ValueError, match='rig.npy: 17 joints, but the classifier.s layout ntu25 has 25'):
        run_timeline('--checkpoint', untrimmed / 'head' / 'heads.pth', '--recording', tmp_path / 'rig.npy')
    np.save(tmp_path / 'flat.npy', np.ones((80, 25, 2), dtype=np.float32))
    with pytest.raises(ValueError, match='flat.npy: 2 numbers per joint, but the classifier was trained on xyz clips'):
        run_timeline('--checkpoint', untrimmed / 'head' / 'heads.pth', '--recording', tmp_path / 'flat.npy')
    with pytest.raises(ValueError, match='OpenPose frames are 2D, but the classifier was trained on 3D clips'):
        run_timeline('--checkpoint', untrimmed / 'head' / 'heads.pth', '--follow', tmp_path / 'empty')
    (tmp_path / 'model.onnx').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='no model.onnx.json beside it'):
        run_timeline('--checkpoint', tmp_path / 'model.onnx', '--recording', video)


def test_an_exported_classifier_gives_the_heads_timeline(openpose_head, tmp_path):
    head, video = openpose_head / 'head' / 'heads.pth', _longest_video(openpose_head / 'raw')
    export.main(export.get_export_parser().parse_args(['--checkpoint', str(head), '--format', 'onnx', '--out',
                                                       str(tmp_path / 'model.onnx')]))
    assert json.loads((tmp_path / 'model.onnx.json').read_text())['output'] == 'probabilities'
    expected, _ = run_timeline('--checkpoint', head, '--recording', video, '--window', 16)
    got, _ = run_timeline('--checkpoint', tmp_path / 'model.onnx', '--recording', video, '--window', 16)
    assert [(w.person, w.start) for w in got] == [(w.person, w.start) for w in expected]
    np.testing.assert_allclose(np.stack([w.probs for w in got]), np.stack([w.probs for w in expected]), atol=1e-4)


def test_follow_stops_at_a_frame_of_another_layout(openpose_head, monkeypatch):
    monkeypatch.setattr('sys.stdin', io.StringIO('{"people": [{"pose_keypoints_2d": [1, 2, 0.5]}]}\n'))
    with pytest.raises(ValueError, match='standard input, line 1: person 0, pose_keypoints_2d .* expected 51 numbers'):
        run_timeline('--checkpoint', openpose_head / 'head' / 'heads.pth', '--follow', '-')
