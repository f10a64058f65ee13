"""Poses from videos of a real person (tests/video_sample.py), through feeder.video, preparation,
predictions and timelines; the estimator (mediapipe, requirements-video.txt) runs offline."""
import csv
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import feeder.prepare as prep
import linear_eval
import predict
import timeline
from feeder import video
from feeder.layouts import get_layout
from feeder.raw.video import by_person, estimate_video, frame_tracks
from recordings.video import read_video
from tests.video_sample import estimator_installed, fit_point, transforms, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = 16


needs_estimator = pytest.mark.skipif(not estimator_installed(), reason='mediapipe is not installed '
                                                                        '(requirements-video.txt)')


def test_nothing_but_the_video_modules_imports_the_estimator():
    names = [f[:-3] for f in os.listdir(ROOT) if f.endswith('.py')]
    code = ('import sys\n' + ''.join(f'import {n}\n' for n in names) + 'import feeder.video, recordings.video\n'
            "print(sorted(m for m in ('cv2', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_without_the_estimator_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    for name in ('cv2', 'mediapipe'):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError
    (tmp_path / 'a.mp4').write_bytes(b'')
    assert video.main([str(tmp_path / 'a.mp4'), '--out-dir', str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: video input needs mediapipe and OpenCV (cv2 is not installed): '
                   'pip install -r requirements-video.txt']
    assert not (tmp_path / 'out').exists()


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """Class folders of videos (upright and tilted, moving either way), and one video that turns from
    upright to tilted with a stretch without her."""
    root = tmp_path_factory.mktemp('videos')
    for label, tilt in (('upright', 0.0), ('tilted', 30.0)):
        (root / 'classes' / label).mkdir(parents=True)
        for k, shift in enumerate((1.5, -1.0, 0.5)):
            write_video(root / 'classes' / label / f'{label}{k}.avi', transforms(FRAMES + 8, shift=shift, tilt=tilt))
    turn = transforms(72, shift=0.8, scale=(0.3, 0.0005), tilt=[0.0] * 36 + [30.0] * 36, absent=[(30, 42)])
    write_video(root / 'turn.avi', turn)
    return root, turn


@needs_estimator
def test_landmarks_follow_the_photograph_and_a_frame_without_her_has_none(videos):
    root, maps = videos
    poses = estimate_video(str(root / 'turn.avi'))
    present = np.array([m is not None for m in maps])
    assert (poses.frames, poses.fps, poses.width, poses.height) == (72, 30.0, 320, 240)
    assert (poses.score[present] > 0).any(-1).all() and not poses.score[~present].any()
    assert not poses.image[~present].any() and not poses.world[~present].any()
    # each landmark is one point of the photograph carried by the frame's transform, within pixels
    for joint, most in ((0, 6.0), (11, 10.0), (12, 10.0)):  # nose, shoulders
        _, distance = fit_point(poses.image[:, joint], maps)
        assert distance.max() < most and np.median(distance) < 3.0
    assert (poses.world[present][:, 0, 1] < poses.world[present][:, 23, 1]).all()  # y down: the nose above the hip


@needs_estimator
def test_a_jump_across_the_frame_starts_another_person(tmp_path):
    maps = transforms(40, shift=0.0)
    for t, affine in enumerate(maps):
        affine[0, 2] = 20 if t < 20 else 300  # the person now far from where she was: another one
    write_video(tmp_path / 'jump.avi', maps, size=(480, 240))
    poses = estimate_video(str(tmp_path / 'jump.avi'))
    track = frame_tracks(poses)  # BlazePose, tracking, may miss a frame (it does at the jump)
    assert set(track[:20]) <= {0, -1} and set(track[20:]) <= {1, -1} and (track >= 0).sum() >= 36
    keypoint, score = by_person(poses, poses.world)
    assert keypoint.shape == (2, 40, 33, 3)
    for m in (0, 1):
        assert ((score[m] > 0).any(-1) == (track == m)).all()
        np.testing.assert_array_equal(keypoint[m, track == m], poses.world[track == m])


@needs_estimator
def test_feeder_video_writes_what_preparation_reads_and_a_rerun_skips(videos, tmp_path, capsys):
    root, _ = videos
    out = tmp_path / 'poses'
    assert video.main([str(root / 'classes'), '--out-dir', str(out), '--workers', '2', '--quiet']) == 0
    assert '6 video(s) estimated, 144 frames, a person found in 144' in capsys.readouterr().out
    names = [f'{c}{k}' for c in ('tilted', 'upright') for k in range(3)]
    assert sorted(os.listdir(out)) == sorted([f'{n}.json' for n in names] + ['classes.txt', 'labels.csv'])
    record = json.loads((out / 'upright0.json').read_text())
    assert {k: record['video'][k] for k in ('fps', 'width', 'height', 'frames', 'frames_with_person', 'layout')} == \
        {'fps': 30.0, 'width': 320, 'height': 240, 'frames': 24, 'frames_with_person': 24, 'layout': 'mediapipe33'}
    assert [entry['frame_index'] for entry in record['data']] == list(range(24))
    assert (out / 'classes.txt').read_text() == 'tilted\nupright\n'
    assert sorted(csv.reader(open(out / 'labels.csv')))[1:] == sorted([n, str(int(n.startswith('upright')))]
                                                                      for n in names)
    before = {f: os.path.getmtime(out / f) for f in os.listdir(out) if f.endswith('.json')}
    assert video.main([str(root / 'classes'), '--out-dir', str(out), '--quiet']) == 0
    assert '6 of 6 videos already done' in capsys.readouterr().out
    assert before == {f: os.path.getmtime(out / f) for f in before}

    world = tmp_path / 'world'
    assert video.main([str(root / 'turn.avi'), '--out-dir', str(world), '--coordinates', 'world', '--quiet']) == 0
    clip = np.load(world / 'turn.npy')
    # away for more than 10 frames: back as another person, as preparation's tracker would link her
    assert clip.shape == (2, 72, 33, 3) and clip.dtype == np.float32
    present = (clip != 0).any(-1).any(-1)
    assert present[0].tolist() == [True] * 30 + [False] * 42 and present[1].tolist() == [False] * 42 + [True] * 30
    with pytest.raises(SystemExit):
        video.main([str(root / 'turn.avi'), '--out-dir', str(world), '--coordinates', 'pixels'])
    assert video.main([str(root / 'turn.avi'), '--out-dir', str(world), '--quiet']) == 1
    assert 'holds world coordinates (.npy) of a --coordinates world run' in capsys.readouterr().err

    for source, channels in ((out, 'xy'), (world, 'xyz')):
        data = tmp_path / f'data_{channels}'
        assert prep.main(['--dataset', 'custom', '--annotations', str(source), '--layout', 'mediapipe33',
                          '--out-dir', str(data), '--workers', '0', '--quiet']) == 0
        info = json.loads((data / 'dataset.json').read_text())
        assert info['channels'] == channels and info['layout']['name'] == 'mediapipe33'


def linear_head(videos_root, work, coordinates='image'):
    """The class videos' poses (``coordinates``) prepared, one video of each class held out for val,
    and a linear head on their coordinates, in ``work``."""
    poses = work / 'poses'
    assert video.main([str(videos_root / 'classes'), '--out-dir', str(poses), '--workers', '2', '--quiet',
                       '--coordinates', coordinates]) == 0
    rows = list(csv.reader(open(poses / 'labels.csv')))[1:]
    (poses / 'labels.csv').write_text(
        'name,label,split\n' + ''.join(f'{n},{y},{"val" if n.endswith("2") else "train"}\n' for n, y in rows))
    assert prep.main(['--dataset', 'custom', '--annotations', str(poses), '--layout', 'mediapipe33',
                      '--out-dir', str(work / 'data'), '--workers', '0', '--quiet']) == 0
    linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'custom', '--data-root', str(work / 'data'), '--protocol', 'all', '--checkpoint', 'raw',
         '--epochs', '30', '--frames', str(FRAMES), '--workers', '0', '--device', 'cpu', '--quiet',
         '--output-dir', str(work / 'head')]))
    return work


@pytest.fixture(scope='module')
def classifier(videos, tmp_path_factory):
    """A linear head on the class videos' image coordinates (2D)."""
    if not estimator_installed():
        pytest.skip('mediapipe is not installed (requirements-video.txt)')
    return linear_head(videos[0], tmp_path_factory.mktemp('classifier'))


def run_timeline(*argv):
    return timeline.main(timeline.get_timeline_parser().parse_args([str(a) for a in argv]))


@needs_estimator
def test_predictions_and_a_timeline_straight_from_a_video(videos, classifier, tmp_path, capsys):
    root, _ = videos
    head = classifier / 'head' / 'heads.pth'
    predict.main(predict.get_predict_parser().parse_args(
        ['--dataset', 'custom', '--data-root', str(classifier / 'data'), '--protocol', 'all', '--checkpoint', str(head),
         '--workers', '0', '--device', 'cpu', '--out', str(tmp_path / 'p.csv')]))
    rows = list(csv.DictReader(open(tmp_path / 'p.csv')))
    assert sorted(r['name'] for r in rows) == sorted(f'{c}{k}' for c in ('tilted', 'upright') for k in range(3))
    assert all(r['pred1'] == r['label'] for r in rows)  # upright and tilted apart, the held-out videos too

    # --video estimates here what feeder.video wrote to a file: the same windows as --recording of that file
    windows, by_person = run_timeline('--checkpoint', head, '--video', root / 'turn.avi', '--stride', 4,
                                      '--segments', tmp_path / 's.csv')
    assert video.main([str(root / 'turn.avi'), '--out-dir', str(tmp_path / 'turn'), '--quiet']) == 0
    recorded, _ = run_timeline('--checkpoint', head, '--recording', tmp_path / 'turn' / 'turn.json', '--stride', 4)
    assert [(w.person, w.start) for w in windows] == [(w.person, w.start) for w in recorded]
    for a, b in zip(windows, recorded):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-3)
    # she turns from upright to tilted while away (frames 30-42): a track each, each its class
    assert sorted(by_person) == [0, 1]
    assert [s.label for s in by_person[0]] == [1] and [s.label for s in by_person[1]] == [0]
    assert by_person[0][0].start == 0 and 30 <= by_person[0][0].end <= 42
    assert 30 <= by_person[1][0].start <= 42 and by_person[1][0].end == 72

    # --follow of the same file: a line per window as its last frame arrives, the same windows
    live, _ = run_timeline('--checkpoint', head, '--follow', root / 'turn.avi', '--stride', 4, '--idle-exit', 0.3)
    out = capsys.readouterr().out
    assert '72 frames read (0 unreadable, skipped)' in out and 'person 0 frames 0-16: upright' in out
    assert [(w.person, w.start) for w in live] == [(w.person, w.start) for w in windows]
    for a, b in zip(live, windows):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)

    # --follow of a file while it is written, a frame's chunk at a time: the same windows again
    data, growing = (root / 'turn.avi').read_bytes(), tmp_path / 'growing.avi'
    cuts = [i for i in range(len(data)) if data.startswith(b'00dc', i)] + [len(data)]
    growing.write_bytes(data[:cuts[0]])

    def write_on():
        for start, end in zip(cuts, cuts[1:]):
            time.sleep(0.01)
            with open(growing, 'ab') as f:
                f.write(data[start:end])

    writer = threading.Thread(target=write_on)
    writer.start()
    grown, _ = run_timeline('--checkpoint', head, '--follow', growing, '--stride', 4, '--idle-exit', 1.0)
    writer.join()
    assert [(w.person, w.start) for w in grown] == [(w.person, w.start) for w in windows]
    for a, b in zip(grown, windows):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


@needs_estimator
def test_a_3d_classifier_reads_the_world_coordinates(videos, tmp_path):
    root, _ = videos
    head = linear_head(root, tmp_path / 'world', 'world') / 'head' / 'heads.pth'
    assert json.loads((tmp_path / 'world' / 'data' / 'dataset.json').read_text())['channels'] == 'xyz'
    windows, _ = run_timeline('--checkpoint', head, '--video', root / 'turn.avi', '--stride', 4)
    assert video.main([str(root / 'turn.avi'), '--out-dir', str(tmp_path / 'turn'), '--coordinates', 'world',
                       '--quiet']) == 0
    recorded, _ = run_timeline('--checkpoint', head, '--recording', tmp_path / 'turn' / 'turn.npy', '--stride', 4)
    assert {w.person for w in windows} == {0, 1}
    assert [(w.person, w.start) for w in windows] == [(w.person, w.start) for w in recorded]
    for a, b in zip(windows, recorded):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


@needs_estimator
def test_bad_videos_get_one_line_and_nothing_half_written(videos, tmp_path, capsys):
    root, _ = videos
    bad = tmp_path / 'bad'
    bad.mkdir()
    good = (root / 'classes' / 'upright' / 'upright0.avi').read_bytes()
    (bad / 'good.avi').write_bytes(good)
    (bad / 'empty.mp4').write_bytes(b'')
    (bad / 'cut.avi').write_bytes(good[:len(good) // 2])
    (bad / 'notes.avi').write_text('not a video\n')
    for name, message in (('empty.mp4', 'not a video OpenCV can open'), ('cut.avi', 'decoding stopped at frame'),
                          ('notes.avi', 'not a video OpenCV can open')):
        assert video.main([str(bad / name), '--out-dir', str(tmp_path / name), '--quiet']) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f'error: {bad / name}: {message}')
        assert not (tmp_path / name).exists() or not os.listdir(tmp_path / name)
    (tmp_path / 'nothing').mkdir()
    (tmp_path / 'nothing' / 'readme.txt').write_text('x')
    assert video.main([str(tmp_path / 'nothing'), '--out-dir', str(tmp_path / 'out')]) == 1
    assert 'holds no video' in capsys.readouterr().err

    out = tmp_path / 'skipped'
    assert video.main([str(bad), '--out-dir', str(out), '--skip-bad', '--workers', '2', '--quiet']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(os.listdir(out)) == ['good.json']  # no temporary file, nothing of the bad ones
    assert sum(line.startswith('left out: ') for line in lines) == 3
    with pytest.raises(ValueError, match="--video .* gives mediapipe33 poses .BlazePose., but the classifier's "
                                         r"layout is coco17 \(17 joints\)"):
        read_video(str(bad / 'good.avi'), get_layout('coco17'), 2)
