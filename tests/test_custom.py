"""Own pose data in (pyskl pickles, .npy folders; any layout, 2D or 3D) and features out
(feeder/raw/custom.py, extract_features.py)."""
import json
import os
import pickle
import re

import numpy as np
import pytest
import torch

import extract_features
from feeder.augment import random_spatial
from feeder.layouts import COCO17, Layout, get_layout
from feeder.modalities import to_modality
from feeder.raw import prepare as prep
from feeder.raw.pose import PosePreparation, custom_clip
from feeder.raw.normalize import mark_missing, normalize_pose_data
from feeder.raw.synthetic import RIG

# a standing COCO-17 figure in pixels (x right, y down), 100 px from hip to shoulder
STAND = np.array([(0, -150), (-8, -158), (8, -158), (-16, -152), (16, -152), (-30, -100), (30, -100),
                  (-38, -50), (38, -50), (-40, 0), (40, 0), (-18, 0), (18, 0), (-20, 80), (20, 80),
                  (-20, 160), (20, 160)], dtype=np.float64)


def _coco_clip(rng, frames, persons=1, at=(320, 240)):
    keypoint = np.stack([[STAND + at + (60 * p, 0) + rng.normal(0, 3, size=STAND.shape)
                          for _ in range(frames)] for p in range(persons)])
    return keypoint, rng.uniform(0.5, 1.0, size=keypoint.shape[:3])


def _write_pyskl(path, annotations, split=None, protocol=5):
    record = annotations if split is None else {'split': split, 'annotations': annotations}
    path.write_bytes(pickle.dumps(record, protocol=protocol))
    return path


def _prepare(*argv):
    return prep.main([str(a) for a in argv] + ['--quiet', '--workers', '0'])


def _load(out, benchmark, part):
    folder = out / benchmark
    with open(folder / f'{part}_label.pkl', 'rb') as f:
        names, labels = pickle.load(f)
    return (np.load(folder / f'{part}_data_joint.npy'), np.load(folder / f'{part}_num_frame.npy'), names, labels)


def _direct_2d(keypoint, score, layout):
    """The 2D normalisation written out: y up; each missed joint (score 0) filled linearly between
    its detections in the frames before and after; centred on the hips' mean per frame (person 0);
    divided by the mean bone length. The test clips miss a joint only between two detections."""
    present = score > 0
    x = np.where(present[..., None], keypoint.astype(np.float64) * (1, -1), 0)
    for m, t, v in zip(*np.nonzero(~present)):
        before = max(s for s in range(t) if present[m, s, v])
        after = min(s for s in range(t + 1, x.shape[1]) if present[m, s, v])
        x[m, t, v] = x[m, before, v] + (t - before) / (after - before) * (x[m, after, v] - x[m, before, v])
    hips = list(layout.center)
    x = x - x[0][:, hips].mean(1)[None, :, None]
    child, parent = np.array(layout.edges).T
    return x / np.linalg.norm(x[:, :, child] - x[:, :, parent], axis=-1).mean()


@pytest.mark.parametrize('protocol', [2, 5])
@pytest.mark.parametrize('bare', [False, True], ids=['with-splits', 'bare-list'])
def test_pyskl_annotations_round_trip(tmp_path, protocol, bare):
    rng = np.random.default_rng(0)
    annotations, split = [], {'xsub_train': [], 'xsub_val': []}
    for i in range(6):
        keypoint, score = _coco_clip(rng, 20 + i, persons=1 + i % 2)
        score[0, 3, 9] = 0  # a missed wrist
        annotations.append({'frame_dir': f'clip{i}', 'label': i % 3, 'total_frames': 20 + i,
                            'keypoint': keypoint.astype(np.float16), 'keypoint_score': score.astype(np.float16),
                            'img_shape': (480, 640)})
        split['xsub_train' if i < 4 else 'xsub_val'].append(f'clip{i}')
    path = _write_pyskl(tmp_path / 'poses.pkl', annotations, None if bare else split, protocol)
    out = tmp_path / 'out'
    assert _prepare('--dataset', 'custom', '--annotations', path, '--layout', 'coco17', '--out-dir', out,
                    '--channels', 'xys') == 0
    info = json.loads((out / 'dataset.json').read_text())
    assert info['name'] == 'poses' and info['channels'] == 'xys' and info['persons'] == 2
    assert info['num_classes'] == 3 and get_layout('coco17').to_json() == info['layout']
    benchmark = 'all' if bare else 'xsub'
    data, frames, names, labels = _load(out, benchmark, 'train')
    assert names == [f'clip{i}' for i in (range(6) if bare else range(4))] and labels == [0, 1, 2, 0, 1, 2][:len(names)]
    assert data.shape == (len(names), 3, 300, 17, 2) and frames.tolist() == [20, 21, 22, 23, 24, 25][:len(names)]
    assert os.path.isdir(out / 'xsub') != bare
    for i in range(2):  # one- and two-person clips
        ann = annotations[i]
        keypoint, score = ann['keypoint'].astype(np.float64), ann['keypoint_score'].astype(np.float64)
        expected = _direct_2d(keypoint, score, COCO17)
        got = data[i].transpose(3, 1, 2, 0)[:, :frames[i]]  # (M, T, V, C)
        np.testing.assert_allclose(got[:len(expected), :, :, :2], expected, atol=1e-5)
        np.testing.assert_allclose(got[:len(expected), :, :, 2], score, atol=1e-3)  # the confidence channel
        assert got[0, 3, 9, 2] == 0 and (got[0, 3, 9, :2] != 0).all()  # the missed wrist: filled, confidence 0
        np.testing.assert_array_equal(data[i][:, frames[i]:2 * frames[i]], data[i][:, :frames[i]])  # cyclic


def test_2d_normalisation_keeps_pixels_upright_and_scale_free():
    rng = np.random.default_rng(1)
    keypoint, score = _coco_clip(rng, 12)
    points, _, present = mark_missing(keypoint, score)
    once = normalize_pose_data(points, present, COCO17)
    larger = normalize_pose_data(points * 3 + 500, present, COCO17)  # another image size and crop
    np.testing.assert_allclose(larger, once, atol=1e-5)
    nose, hip = COCO17.joint_names.index('nose'), COCO17.joint_names.index('left_hip')
    assert (once[0, :, nose, 1] > once[0, :, hip, 1]).all()  # image y down became y up
    np.testing.assert_allclose(once[0][:, list(COCO17.center)].mean(1), 0, atol=1e-5)


def test_3d_normalisation_turns_and_scales_whatever_the_units():
    rig = Layout.from_json(RIG)
    rng = np.random.default_rng(2)
    names = rig.joint_names
    body = np.zeros((1, 5, len(names), 3))
    for v, parent in rig.bone_pairs:
        if v != parent:
            body[:, :, v] = body[:, :, parent] + rng.normal(0, 0.2, size=3)
    body += (0.5, -0.2, 3.0)  # metres, the root away from (0, 0, 0), which marks a missed joint
    seen = body * 1000 + (100, 200, 3000)  # millimetres, elsewhere
    prepare = PosePreparation('xyz', 1, rig, align='clip')
    a, b = custom_clip(body, None, prepare)[0], custom_clip(seen, None, prepare)[0]
    np.testing.assert_allclose(b, a, atol=1e-4)  # the units do not matter
    up = a[0, 0, names.index('chest')] - a[0, 0, names.index('pelvis')]
    assert abs(up[0]) < 1e-5 and abs(up[1]) < 1e-5 and up[2] > 0  # onto +z
    across = a[0, 0, names.index('r_shoulder')] - a[0, 0, names.index('l_shoulder')]
    assert across[0] > 0 and abs(across[1]) < 1e-5  # turned about z only, onto the xz plane
    child, parent = np.array(rig.edges).T
    assert np.linalg.norm(a[:, :, child] - a[:, :, parent], axis=-1).mean() == pytest.approx(1, abs=1e-5)


def test_missing_joints_become_zero_with_zero_confidence():
    keypoint = np.ones((1, 3, 4, 2))
    keypoint[0, 0, 1] = np.nan
    keypoint[0, 1, 2] = 0  # an estimator's "not detected"
    score = np.full((1, 3, 4), 0.9)
    score[0, 2, 3] = 0
    points, confidence, present = mark_missing(keypoint, score)
    assert present.sum() == 9 and not np.isnan(points).any()
    assert points[0, 0, 1].tolist() == [0, 0] and confidence[0, 0, 1] == 0 and confidence[0, 2, 3] == 0


def test_a_confidence_channel_is_carried_not_differenced():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 17, 1)
    x[:, 2] = torch.rand(4, 6, 17, 1)  # x, y, confidence
    for modality in ('motion', 'bone'):
        out = to_modality(x, modality, COCO17, coordinates=2)
        torch.testing.assert_close(out[:, 2], x[:, 2])  # each joint's own confidence
        torch.testing.assert_close(out[:, :2], to_modality(x[:, :2], modality, COCO17))
    views = random_spatial(x, 10, corruption=1.0, coordinates=2)
    zeroed = (views[:, :2] == 0).all(dim=1) & (x[:, :2] != 0).any(dim=1)
    assert zeroed.any() and (views[:, 2][zeroed] == 0).all()  # zeroed joints lose their confidence
    kept = ~(views[:, :2] == 0).all(dim=1)
    torch.testing.assert_close(views[:, 2][kept], x[:, 2][kept])  # never sheared


def test_npy_folder_with_labels_csv_and_classes(tmp_path):
    rng = np.random.default_rng(3)
    clips = tmp_path / 'clips'
    clips.mkdir()
    for i in range(5):
        np.save(clips / f'take{i}.npy', rng.normal(size=(12 + i, 17, 3)).astype(np.float32))
    (clips / 'labels.csv').write_text('name,label,split\ntake0,0,cv_train\ntake1,1,cv_train\ntake2,1,cv_val\n'
                                      'take3.npy,0,cv_train\ntake0,0,train\n')
    (clips / 'classes.txt').write_text('wave\nbow\n')
    rig = tmp_path / 'rig.json'
    rig.write_text(json.dumps(RIG))
    out = tmp_path / 'out'
    assert _prepare('--dataset', 'custom', '--annotations', clips, '--layout', rig, '--out-dir', out,
                    '--name', 'studio') == 0
    info = json.loads((out / 'dataset.json').read_text())
    assert info['name'] == 'studio' and info['class_names'] == ['wave', 'bow'] and info['channels'] == 'xyz'
    assert info['benchmarks'] == {'all': {'train': 1}, 'cv': {'train': 3, 'val': 1}}
    assert _load(out, 'cv', 'train')[2:] == (['take0', 'take1', 'take3'], [0, 1, 0])
    summary = json.loads((out / 'prepare_summary.json').read_text())
    assert summary['skipped']['not in labels.csv'] == ['take4']
    np.save(clips / 'take9.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    assert _prepare('--dataset', 'custom', '--annotations', clips, '--layout', rig, '--out-dir', out) == 1


def test_a_crafted_annotation_file_runs_nothing(tmp_path, capsys):
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return open, (str(marker), 'w')
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps([{'frame_dir': 'a', 'keypoint': Payload()}]))
    assert _prepare('--dataset', 'custom', '--annotations', path, '--layout', 'coco17', '--out-dir', tmp_path / 'o') == 1
    assert 'evil.pkl: refused: it asks for io.open' in capsys.readouterr().err and not marker.exists()


@pytest.mark.parametrize('argv, message', [
    (['--layout', 'openpose25'], 'openpose25 has 25 joints, but the clips of .* have 17'),
    (['--layout', 'coco17', '--channels', 'xyz'], '--channels xyz needs 3 numbers per joint, the data has 2'),
    ([], '--dataset custom needs --annotations PATH and --layout'),
])
def test_custom_input_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    keypoint, score = _coco_clip(np.random.default_rng(0), 5)
    path = _write_pyskl(tmp_path / 'p.pkl', [{'frame_dir': 'a', 'keypoint': keypoint, 'keypoint_score': score}])
    assert _prepare('--dataset', 'custom', '--annotations', path, '--out-dir', tmp_path / 'o', *argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err)
    bad = _write_pyskl(tmp_path / 'q.pkl', [{'frame_dir': 'a', 'keypoint': keypoint}], split={'fold1': ['a']})
    assert _prepare('--dataset', 'custom', '--annotations', bad, '--layout', 'coco17', '--out-dir', tmp_path / 'o') == 1
    assert "split 'fold1' is not named P_train" in capsys.readouterr().err


def test_features_out_and_skeletons_checked(tmp_path, tiny_checkpoint, data_root, capsys):
    rng = np.random.default_rng(4)
    annotations = []
    for i in range(6):
        keypoint, score = _coco_clip(rng, 10)
        annotations.append({'frame_dir': f'c{i}', 'keypoint': keypoint, 'keypoint_score': score})
    path = _write_pyskl(tmp_path / 'unlabelled.pkl', annotations)
    out = tmp_path / 'data'
    assert _prepare('--dataset', 'custom', '--annotations', path, '--layout', 'coco17', '--out-dir', out) == 0
    args = extract_features.get_extract_parser().parse_args(
        ['--dataset', 'custom', '--data-root', str(out), '--protocol', 'all', '--checkpoint', 'random',
         '--hidden-size', '8', '--num-layers', '1', '--frames', '8', '--workers', '0', '--out', str(tmp_path / 'f.npz')])
    extract_features.main(args)
    assert 'stream: all  (every stream fused: the features of extract_features.py and retrieve.py)' in \
        capsys.readouterr().out.splitlines()
    features = np.load(tmp_path / 'f.npz')  # no allow_pickle needed
    assert sorted(features.files) == ['bone_train', 'checkpoint', 'checkpoint_sha256', 'fused_train', 'joint_train',
                                      'labels_train', 'motion_train', 'names_train']
    assert features['joint_train'].shape == (6, 16) and features['joint_train'].dtype == np.float32
    assert features['fused_train'].shape == (6, 48) and features['labels_train'].tolist() == [-1] * 6
    assert features['names_train'].tolist() == [f'c{i}' for i in range(6)] and str(features['checkpoint']) == 'random'
    # an NTU-layout (3D) checkpoint cannot encode COCO-17 (2D) clips: 2D never feeds a 3D encoder
    args.checkpoint = str(tiny_checkpoint)
    with pytest.raises(ValueError, match=r'pretrained on synthetic \(layout ntu25 .*cannot encode unlabelled '
                                         r'\(layout coco17 of 17 joints x 1 persons x xy\): clips of channels xy '
                                         r'cannot feed an encoder trained on xyz clips'):
        extract_features.main(args)


def test_synthetic_2d_detections_end_to_end(tmp_path):
    """As a user's own data would come: COCO-17 detections in a pyskl file, prepared as custom
    data, pretrained with the small-data rules, then kNN against a random encoder. Twelve epochs
    already lift motion 1-NN above the random encoder's (measured 49.3 against 41.7, fused 56.3 against 53.5,
    with this seed); a full run gains far more (README, "Results")."""
    import knn_eval
    import pretrain
    from feeder.raw.synthetic import write_pyskl
    write_pyskl(str(tmp_path / 'poses.pkl'), '2d', subjects=6)
    data = tmp_path / 'data'
    assert _prepare('--dataset', 'custom', '--annotations', tmp_path / 'poses.pkl', '--layout', 'coco17',
                    '--out-dir', data) == 0
    common = ['--dataset', 'custom', '--protocol', 'xsub', '--data-root', str(data), '--workers', '0', '--device', 'cpu']
    pretrain.main(pretrain.get_pretrain_parser().parse_args(
        common + ['--output-dir', str(tmp_path / 'run'), '--epochs', '12', '--schedule', '10', '--quiet',
                  '--knn-every', '0']))
    accuracy = {}
    for name, checkpoint in (('pretrained', str(tmp_path / 'run' / 'checkpoint.pth')), ('random', 'random')):
        args = knn_eval.get_knn_parser().parse_args(
            common + ['--checkpoint', checkpoint, '--stream', 'all', '--output-dir', str(tmp_path / name)])
        accuracy[name] = {s: v['top1@k=1'] for s, v in knn_eval.main(args)['accuracy'].items()}
    assert accuracy['pretrained']['motion'] > accuracy['random']['motion'] + 5
    assert accuracy['pretrained']['fused'] > accuracy['random']['fused']


def test_unlabelled_data_pretrains_and_the_monitor_says_why_it_is_off(tmp_path, capsys):
    import pretrain
    rng = np.random.default_rng(5)
    annotations = [{'frame_dir': f'c{i}', 'keypoint': _coco_clip(rng, 10)[0]} for i in range(8)]
    path = _write_pyskl(tmp_path / 'raw.pkl', annotations)
    assert _prepare('--dataset', 'custom', '--annotations', path, '--layout', 'coco17', '--out-dir', tmp_path / 'd') == 0
    pretrain.main(pretrain.get_pretrain_parser().parse_args(
        ['--dataset', 'custom', '--protocol', 'all', '--data-root', str(tmp_path / 'd'), '--output-dir',
         str(tmp_path / 'run'), '--epochs', '1', '--batch-size', '4', '--queue-size', '8', '--topk', '4',
         '--hidden-size', '8', '--num-layers', '1', '--frames', '8', '--min-crop', '4', '--workers', '0', '--device', 'cpu',
         '--quiet']))
    assert 'kNN monitor skipped: the benchmark has no val part' in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / 'run' / 'checkpoint.pth', weights_only=True)
    assert checkpoint['dataset']['layout']['name'] == 'coco17' and checkpoint['dataset']['channels'] == 'xy'


@pytest.mark.parametrize('layout_name, channels', [('coco17', 'xy'), ('mediapipe33', 'xys'), ('h36m17', 'xyz')])
def test_both_encoders_follow_the_layout_and_channels(layout_name, channels):
    from models import EncoderConfig, build_encoder
    from options.presets import recipe
    layout = get_layout(layout_name)
    x = torch.randn(3, len(channels), 12, layout.num_joints, 2)
    for encoder in ('gru', 'stgcn'):
        values = recipe('ntu60', encoder=encoder)[0]
        config = EncoderConfig.from_dict(dict(values, hidden_size=8, num_layers=1, dim=16))
        model = build_encoder(config, layout, persons=2, channels=len(channels)).eval()
        features = model.features(to_modality(x, 'bone', layout, coordinates=2 if channels != 'xyz' else 3))
        assert features.shape == (3, model.feature_dim) and torch.isfinite(features).all()
    graph = build_encoder(EncoderConfig.from_dict(dict(recipe('ntu60', encoder='stgcn')[0], dim=16)), layout, 2,
                          len(channels)).A
    assert graph.shape == (3, layout.num_joints, layout.num_joints)  # ST-GCN's partition of this skeleton
