"""Own pose data prepared without losing what the coordinates hold (feeder/raw/normalize.py,
feeder/raw/pose.py; docs/data.md, "Your own data"): missed joints filled along time, a centre
that falls back on the joints present, and the 3D turns of --align clip, dataset, none and auto."""
import json
import pickle

import numpy as np
import pytest

from feeder.layouts import Layout
from feeder.raw import prepare as prep
from feeder.raw.pose import PosePreparation, custom_clip
from feeder.raw.normalize import fill_missing, person_centre
from feeder.raw.synthetic import RIG, RIG_FROM_NTU, samples

LAYOUT = Layout.from_json(RIG)
NAMES = LAYOUT.joint_names
PELVIS, CHEST, SPINE = NAMES.index('pelvis'), NAMES.index('chest'), NAMES.index('spine')
L_SHOULDER, R_SHOULDER = NAMES.index('l_shoulder'), NAMES.index('r_shoulder')


def _rotation(axis, degrees):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _clips(count=None, classes=4, subjects=3):
    """Single-person motion-capture clips of the synthetic rig, z up (x right, y forward), in
    metres, with their labels and subjects."""
    out = []
    for name, bodies, present, _ in samples(classes=classes, subjects=subjects, cameras=1, replications=2):
        if not present[0].all():
            continue
        camera = bodies[:1, :, list(RIG_FROM_NTU)]  # camera space: x right, y up, z away
        out.append((camera[..., [0, 2, 1]] * (1, -1, 1), int(name[-3:]) - 1, int(name[9:12])))
    return out[:count]


def _prepare_clip(keypoint, align='clip', fill='linear', rotation=None, layout=LAYOUT, score=None):
    return custom_clip(keypoint, score, PosePreparation('xyz', 1, layout, fill, align, rotation))[0]


def _up(clip, t=None):
    frames = slice(None) if t is None else slice(t, t + 1)
    return (clip[0, frames, CHEST] - clip[0, frames, PELVIS]).mean(0)


# --------------------------------------------------------------------------- missed joints

def _interpolate_by_hand(values, seen):
    """The fill written out for one joint's coordinate track: linear between the two nearest
    detections, the nearest detection held at either end."""
    out = values.copy()
    frames = [t for t in range(len(values)) if seen[t]]
    for t in range(len(values)):
        if seen[t]:
            continue
        before = [s for s in frames if s < t]
        after = [s for s in frames if s > t]
        if not before:
            out[t] = values[after[0]]
        elif not after:
            out[t] = values[before[-1]]
        else:
            a, b = before[-1], after[0]
            out[t] = values[a] + (t - a) / (b - a) * (values[b] - values[a])
    return out


def test_missed_joints_are_filled_linearly_in_time():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 12, 5, 3))
    present = rng.random((2, 12, 5)) > 0.3
    present[0, :, 4] = False          # never detected: stays missing
    present[1, 6:9] = False           # person 1 absent in frames 6-8: not invented
    present[0, 0, 2] = present[0, -1, 2] = False  # the ends held
    present[0, 1, 2] = present[0, -2, 2] = True
    filled, used = fill_missing(np.where(present[..., None], points, 0), present)
    seen = present.any(-1)
    for m in range(2):
        for v in range(5):
            if not present[m, :, v].any():
                assert not used[m, :, v].any() and (filled[m, :, v] == 0).all()
                continue
            for c in range(3):
                expected = _interpolate_by_hand(points[m, :, v, c], present[m, :, v])
                np.testing.assert_allclose(filled[m, seen[m], v, c], expected[seen[m]], atol=1e-12)
    assert not used[1, 6:9].any() and (filled[1, 6:9] == 0).all()
    np.testing.assert_array_equal(used, seen[..., None] & present.any(1, keepdims=True))


def test_filled_joints_keep_confidence_zero_and_zero_fill_keeps_zeros():
    rng = np.random.default_rng(1)
    keypoint = np.stack([[[(10 * v + t, 5 * v - t) for v in range(17)] for t in range(10)]]).astype(np.float64)
    keypoint += 100
    score = rng.uniform(0.5, 1, size=keypoint.shape[:3])
    score[0, 3:6, 9] = 0  # a wrist missed for three frames
    prep_xys = PosePreparation('xys', 1, Layout.from_json(_coco_like()), 'linear', 'none')
    clip, _ = custom_clip(keypoint, score, prep_xys)
    assert (clip[0, 3:6, 9, 2] == 0).all() and (clip[0, :3, 9, 2] > 0).all()  # the mark: confidence 0
    assert (clip[0, 3:6, 9, :2] != 0).all()
    # this track is linear in time, so the fill recovers it exactly: the same as nothing missed
    complete, _ = custom_clip(keypoint, np.where(score > 0, score, 0.7), prep_xys)
    np.testing.assert_allclose(clip[..., :2], complete[..., :2], atol=1e-5)
    zero, _ = custom_clip(keypoint, score, PosePreparation('xys', 1, prep_xys.layout, 'zero', 'none'))
    assert (zero[0, 3:6, 9] == 0).all()


def _coco_like():
    joints = [f'j{v}' for v in range(17)]
    return {'name': 'chain17', 'joints': joints, 'parents': {joints[v]: joints[v - 1] for v in range(1, 17)},
            'center': ['j0', 'j1'], 'up': ['j0', 'j8'], 'across': ['j2', 'j3']}


def test_the_centre_falls_back_on_the_joints_present():
    rng = np.random.default_rng(2)
    person = rng.normal(size=(8, 6, 3))
    mask = rng.random((8, 6)) > 0.2
    mask[:, 0] = [True, True, False, True, False, False, True, True]  # the centre joint
    mask[4] = False  # nobody in frame 4
    mask[5, 1:] = [True, False, False, False, False]
    centre, known = person_centre(person, mask, (0,))
    # written out: d_j = mean over frames holding both of (centre - x_j); estimate = mean_j (x_j + d_j)
    have = [t for t in range(8) if mask[t, 0]]
    for t in range(8):
        if mask[t, 0]:
            np.testing.assert_allclose(centre[t], person[t, 0])
            continue
        if not mask[t].any():
            assert not known[t]
            continue
        terms = []
        for j in range(6):
            both = [s for s in have if mask[s, j]]
            if mask[t, j] and both:
                terms.append(person[t, j] + np.mean([person[s, 0] - person[s, j] for s in both], axis=0))
        assert known[t]
        np.testing.assert_allclose(centre[t], np.mean(terms, axis=0))


@pytest.mark.parametrize('fill', ['linear', 'zero'])
def test_a_rigid_body_loses_nothing_when_its_centre_is_missed(fill):
    keypoint = _clips(1)[0][0].copy()
    t = np.arange(keypoint.shape[1])
    keypoint = keypoint[:, :1].repeat(len(t), 1)  # one pose, carried along a curve: rigid
    keypoint = keypoint + np.stack([np.sin(t / 3), np.cos(t / 5), 0 * t], -1)[None, :, None]
    complete = _prepare_clip(keypoint, align='none', fill=fill)
    missed = keypoint.copy()
    missed[0, 5:20, SPINE] = np.nan  # the layout's centre joint
    got = _prepare_clip(missed, align='none', fill=fill)
    others = [v for v in range(len(NAMES)) if v != SPINE]
    # the centre from the joints present equals the true one, so everything else is where it was,
    # up to the clip's scale, which the spine's bones (filled or left out) change
    ratio = np.linalg.norm(got[:, :, others]) / np.linalg.norm(complete[:, :, others])
    np.testing.assert_allclose(got[:, :, others], complete[:, :, others] * ratio, atol=1e-5)
    if fill == 'zero':
        assert ratio == pytest.approx(1, abs=0.05) and (got[0, 5:20, SPINE] == 0).all()


# --------------------------------------------------------------------------- the 3D turns

def _angle(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b)), np.dot(a, b)))


@pytest.mark.parametrize('case', ['tilted camera', 'mirrored across', 'facing away', 'noisy first frame'])
def test_clip_alignment_puts_up_on_z_whatever_the_view(case):
    clean = _clips(1)[0][0]
    keypoint = clean @ _rotation((1, 0.3, 0), 40).T  # a tilted camera
    layout = LAYOUT
    if case == 'mirrored across':  # the layout's left/right convention the mirror of the one assumed
        layout = Layout.from_json({**RIG, 'across': ['r_shoulder', 'l_shoulder']})
    if case == 'facing away':
        keypoint = keypoint @ _rotation(_up(keypoint), 180).T
    if case == 'noisy first frame':
        keypoint = keypoint.copy()
        keypoint[0, 0] += np.random.default_rng(3).normal(0, 0.3, size=keypoint[0, 0].shape)
        keypoint[0, 0, [PELVIS, L_SHOULDER]] = 0
    clip = _prepare_clip(keypoint, layout=layout)
    assert _angle(_up(clip), (0, 0, 1)) < 1e-4  # the clip's mean up on +z
    frames = [_angle(clip[0, t, CHEST] - clip[0, t, PELVIS], (0, 0, 1)) for t in range(1, clip.shape[1])]
    assert np.median(frames) < 6 and max(frames) < 15  # upright in every frame (the torso sways)
    across = (clip[0, :, R_SHOULDER] - clip[0, :, L_SHOULDER]).mean(0)
    if case == 'mirrored across':
        across = -across
    assert across[0] > 0 and abs(across[1]) < 1e-5  # across on +x, turned about up only
    reference = _prepare_clip(clean)
    if case == 'noisy first frame':  # one bad frame barely moves the turn
        axes = [_angle((clip[0, 1:, v] - clip[0, 1:, PELVIS]).mean(0),
                       (reference[0, 1:, v] - reference[0, 1:, PELVIS]).mean(0)) for v in (CHEST, R_SHOULDER)]
        assert max(axes) < 1
    elif case != 'mirrored across':  # the same body seen from another side: the same arrays
        np.testing.assert_allclose(clip, reference, atol=1e-4)


def test_a_clip_mirrored_in_its_source_is_prepared_with_y_negated():
    keypoint = _clips(1)[0][0] @ _rotation((0.2, 1, 0.5), 70).T
    mirror = np.diag([1.0, 1.0, -1.0]) @ _rotation((1, 1, 0), 25)  # any reflection
    a = _prepare_clip(keypoint)
    b = _prepare_clip(keypoint @ mirror.T)
    np.testing.assert_allclose(b, a * (1, -1, 1), atol=1e-5)


def _nn1(train, train_labels, test):
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    return train_labels[(b @ a.T).argmax(1)]


def _resampled(clip, frames=50):
    """(M, T, V, C) -> flattened, resampled linearly to ``frames``."""
    pos = np.linspace(0, clip.shape[1] - 1, frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, clip.shape[1] - 1)
    w = (pos - lo)[None, :, None, None]
    return (clip[:, lo] * (1 - w) + clip[:, hi] * w).ravel()


def _write(tmp_path, clips, name='poses.pkl'):
    annotations, split = [], {'s_train': [], 's_val': []}
    for i, (keypoint, label, subject) in enumerate(clips):
        annotations.append({'frame_dir': f'c{i:03d}', 'label': label, 'keypoint': keypoint.astype(np.float32)})
        split['s_train' if subject != 1 else 's_val'].append(f'c{i:03d}')
    path = tmp_path / name
    path.write_bytes(pickle.dumps({'split': split, 'annotations': annotations}))
    (tmp_path / 'rig.json').write_text(json.dumps(RIG))
    return path


def _prepare(tmp_path, path, *flags):
    out = tmp_path / 'out'
    assert prep.main(['--dataset', 'custom', '--annotations', str(path), '--layout', str(tmp_path / 'rig.json'),
                      '--out-dir', str(out), '--workers', '0', '--quiet', *flags]) == 0
    return out, json.loads((out / 'dataset.json').read_text())


def _prepared_parts(out):
    parts = {}
    for part in ('train', 'val'):
        data = np.load(out / 's' / f'{part}_data_joint.npy')
        frames = np.load(out / 's' / f'{part}_num_frame.npy')
        with open(out / 's' / f'{part}_label.pkl', 'rb') as f:
            names, labels = pickle.load(f)
        parts[part] = (np.stack([_resampled(d[:, :n].transpose(3, 1, 2, 0)) for d, n in zip(data, frames)]),
                       np.array(labels), names)
    return parts


def test_dataset_alignment_keeps_the_1nn_of_the_centred_source(tmp_path, capsys):
    rng = np.random.default_rng(4)
    camera = _rotation((1, 0, 0.2), 60)
    clips = [(k @ camera.T * 1000 + (300, -200, 2500) + rng.normal(0, 5, size=k.shape), label, subject)
             for k, label, subject in _clips()]
    out, record = _prepare(tmp_path, _write(tmp_path, clips))
    assert record['preparation']['align'] == 'dataset' and record['preparation']['requested'] == 'auto'
    assert record['preparation']['fill_missing'] == 'linear'
    assert 'lengths' in record and record['lengths']['s']['train']['min'] >= 1
    assert '--align dataset' in capsys.readouterr().out
    # the dataset's up direction lands on +z
    rotation = np.array(record['preparation']['rotation'])
    np.testing.assert_allclose(rotation @ camera @ (0, 0, 1), (0, 0, 1), atol=0.05)
    parts = _prepared_parts(out)
    source = {'train': [], 'val': []}
    for i, (keypoint, _, subject) in enumerate(clips):
        centred = keypoint - keypoint[:, :, SPINE:SPINE + 1]
        source['val' if subject == 1 else 'train'].append(_resampled(centred))
    predicted = _nn1(parts['train'][0], parts['train'][1], parts['val'][0])
    expected = _nn1(np.stack(source['train']), parts['train'][1], np.stack(source['val']))
    np.testing.assert_array_equal(predicted, expected)


def test_auto_turns_each_clip_when_their_up_directions_disagree(tmp_path):
    rng = np.random.default_rng(5)
    clips = [(k @ _rotation(rng.normal(size=3), rng.uniform(0, 180)).T, label, subject)
             for k, label, subject in _clips()]
    out, record = _prepare(tmp_path, _write(tmp_path, clips))
    assert record['preparation']['align'] == 'clip' and record['preparation']['up_spread_degrees'] > 30
    data = np.load(out / 's' / 'train_data_joint.npy').astype(np.float64)
    frames = np.load(out / 's' / 'train_num_frame.npy')
    for clip, n in zip(data, frames):
        assert _angle((clip[:, :n, CHEST, 0] - clip[:, :n, PELVIS, 0]).mean(1), (0, 0, 1)) < 1e-3


def test_align_none_keeps_the_data_axes_and_2d_has_no_turn(tmp_path):
    clips = [(k @ _rotation((1, 0, 0), 90).T, label, subject) for k, label, subject in _clips(8)]
    out, record = _prepare(tmp_path, _write(tmp_path, clips), '--align', 'none', '--fill-missing', 'zero')
    assert record['preparation'] == {'align': 'none', 'fill_missing': 'zero', 'format': 'pyskl'}
    data = np.load(out / 's' / 'train_data_joint.npy')
    up = (data[:, :, 0, CHEST, 0] - data[:, :, 0, PELVIS, 0])
    assert (up[:, 1] < -0.5 * np.linalg.norm(up, axis=1)).all()  # turned by the source's 90 degrees: z up became -y
    flat = [(k[..., :2], label, subject) for k, label, subject in _clips(8)]
    _, record = _prepare(tmp_path, _write(tmp_path, flat, 'flat.pkl'), '--align', 'clip')
    assert record['preparation']['align'] == 'none' and record['channels'] == 'xy'
