"""A checkpoint of one skeleton reading data of another (feeder/joints.py): pretrained on 2D
COCO-17 detections, evaluated on the 3D NTU-layout synthetic set, against the mapping written out."""
import csv
import dataclasses
import json

import pytest
import torch

import export
import knn_eval
import linear_eval
import predict
import pretrain
from evaluation.pretrained import load_encoders
from feeder.datasets import SkeletonFolder
from feeder.info import dataset_info
from feeder.joints import SkeletonMap
from feeder.layouts import COCO17, Layout
from feeder.modalities import to_modality
from tests.conftest import openpose_data, tf32_switches, tiny_flags

# COCO-17's joints in NTU's names (docs/data.md, "Joints across layouts"), written out; the face is
# not in NTU's layout
COCO_FROM_NTU = {'left_shoulder': 'shoulder_left', 'right_shoulder': 'shoulder_right', 'left_elbow': 'elbow_left',
                 'right_elbow': 'elbow_right', 'left_wrist': 'wrist_left', 'right_wrist': 'wrist_right',
                 'left_hip': 'hip_left', 'right_hip': 'hip_right', 'left_knee': 'knee_left', 'right_knee': 'knee_right',
                 'left_ankle': 'ankle_left', 'right_ankle': 'ankle_right'}


@pytest.fixture(scope='module')
def coco_checkpoint(tmp_path_factory):
    """A tiny CMD pretraining on the synthetic performances as OpenPose COCO-17 detections (2D)."""
    root = tmp_path_factory.mktemp('coco')
    openpose_data(root)
    with tf32_switches():
        pretrain.main(pretrain.get_pretrain_parser().parse_args(
            ['--dataset', 'custom', '--data-root', str(root / 'data'), '--protocol', 'xsub', '--output-dir',
             str(root / 'run'), *tiny_flags(), '--epochs', '1']))
    return root / 'run' / 'checkpoint.pth'


def test_clips_of_another_skeleton_are_mapped_as_written_out(coco_checkpoint, data_root):
    ntu = dataset_info('synthetic', str(data_root))
    coco = dataset_info('custom', str(coco_checkpoint.parent.parent / 'data'))
    mapped, record, _ = load_encoders(str(coco_checkpoint), ['joint', 'bone'], ntu)
    own, _, _ = load_encoders(str(coco_checkpoint), ['joint', 'bone'], coco)
    assert record['mapping']['source'] == 'ntu25' and record['mapping']['target'] == 'coco17'
    assert record['mapping']['channels'] == ['-x', 'z'] and record['mapping']['joints']['nose'] is None
    clips = torch.randn(3, 3, 8, 25, 2)
    # the NTU clip seen from the front: x mirrored, z up as the image's y; COCO's joints by name
    written = torch.zeros(3, 2, 8, 17, 2)
    for v, name in enumerate(COCO17.joint_names):
        if name in COCO_FROM_NTU:
            joint = ntu.layout.joint_names.index(COCO_FROM_NTU[name])
            written[:, 0, :, v] = -clips[:, 0, :, joint]
            written[:, 1, :, v] = clips[:, 2, :, joint]
    for stream in ('joint', 'bone'):
        torch.testing.assert_close(mapped[stream].inputs(clips), to_modality(written, stream, coco.layout, 2))
        torch.testing.assert_close(mapped[stream].features(clips), own[stream].features(written))


def test_knn_linear_and_predictions_across_skeletons(coco_checkpoint, data_root, tmp_path, capsys):
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(coco_checkpoint),
              '--workers', '0', '--device', 'cpu']
    knn = knn_eval.main(knn_eval.get_knn_parser().parse_args(common + ['--output-dir', str(tmp_path / 'knn')]))
    line = (f'--checkpoint {coco_checkpoint}: synthetic (xyz, 2 persons) read as raw (xy, 2 persons): '
            'ntu25 -> coco17: 12 of 17 joints by name, 0 made as means, 5 left at zero, 13 of 25 dropped; '
            'channels -x, z')
    assert line in capsys.readouterr().out
    assert json.loads((tmp_path / 'knn' / 'results.json').read_text())['mapping']['target'] == 'coco17'
    assert knn['encoder_kind'] == 'ours'
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        common + ['--stream', 'joint', '--epochs', '3', '--quiet', '--output-dir', str(tmp_path / 'linear')]))
    heads = torch.load(tmp_path / 'linear' / 'heads.pth', weights_only=True)
    assert heads['encoder_dataset']['layout']['name'] == 'coco17' and heads['dataset']['layout']['name'] == 'ntu25'
    # the classifier reads NTU clips through the same map: its predictions score what linear_eval scored
    predict.main(predict.get_predict_parser().parse_args(
        common[:4] + ['--checkpoint', str(tmp_path / 'linear' / 'heads.pth'), '--parts', 'val', '--workers', '0',
                      '--device', 'cpu', '--out', str(tmp_path / 'p.csv')]))
    top1 = json.loads((tmp_path / 'p.json').read_text())['parts']['val']['top1']
    assert top1 == pytest.approx(linear['accuracy']['joint']['top1'], abs=1e-6)
    # exported, the classifier maps NTU clips itself: the probabilities predict.py wrote
    import onnxruntime
    export.main(export.get_export_parser().parse_args(['--checkpoint', str(tmp_path / 'linear' / 'heads.pth'),
                                                       '--format', 'onnx', '--out', str(tmp_path / 'h.onnx')]))
    session = onnxruntime.InferenceSession(str(tmp_path / 'h.onnx'))
    rows = list(csv.DictReader(open(tmp_path / 'p.csv')))
    folder = SkeletonFolder(str(data_root / 'xsub'), 'val')
    for i in (0, 3):
        probs = session.run(None, {'clips': folder.clip(i)[None].numpy()})[0][0]
        assert probs.max() == pytest.approx(float(rows[i]['prob1']), abs=1e-5)
    # data whose classes are not the classifier's: one line, its labels named as its own, no top-1
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'xsub').symlink_to(data_root / 'xsub')
    description = json.loads((data_root / 'dataset.json').read_text())
    description.update(name='other', dataset='custom', num_classes=5, class_names=[f'other_{c}' for c in range(5)])
    (other / 'dataset.json').write_text(json.dumps(description))
    capsys.readouterr()
    predict.main(predict.get_predict_parser().parse_args(
        ['--dataset', 'custom', '--data-root', str(other), '--checkpoint', str(tmp_path / 'linear' / 'heads.pth'),
         '--parts', 'val', '--workers', '0', '--device', 'cpu', '--out', str(tmp_path / 'q.csv')]))
    out = capsys.readouterr().out
    assert 'other has other classes than the classifier (synthetic): its labels are written as its own, and no ' \
           'top-1 is computed' in out and 'top-1' not in out.split('no top-1 is computed')[1]
    labelled = list(csv.DictReader(open(tmp_path / 'q.csv')))
    assert [r['label'] for r in labelled] == [f'other_{label}' for label in folder.labels]
    assert [r['pred1'] for r in labelled] == [r['pred1'] for r in rows] and not (tmp_path / 'q.json').exists()


def test_what_cannot_be_mapped_gets_one_line(tiny_checkpoint, coco_checkpoint):
    coco = dataset_info('custom', str(coco_checkpoint.parent.parent / 'data'))
    with pytest.raises(ValueError, match=r'cannot encode raw .layout coco17 of 17 joints x 2 persons x xy.: '
                                         r'clips of channels xy cannot feed an encoder trained on xyz clips'):
        load_encoders(str(tiny_checkpoint), ['joint'], coco)
    rig = Layout.from_json({'name': 'rig', 'joints': ['a', 'b', 'c'], 'parents': {'b': 'a', 'c': 'a'}, 'center': 'a',
                            'up': ['a', 'b'], 'across': ['b', 'c']})
    with pytest.raises(ValueError, match="layout rig cannot be mapped onto coco17: coco17's alignment joints"):
        SkeletonMap(dataclasses.replace(coco, layout=rig), coco)


def test_small_data_evaluates_the_learned_streams_with_the_coordinates(coco_checkpoint, data_root, tmp_path):
    """Without --stream, kNN on a small dataset (custom, under 5,000 training clips) fuses the learned
    streams and the coordinates, a linear head the learned streams, and a large dataset (the synthetic
    kind trains with its own recipe) is evaluated on the joint stream; results.json says why."""
    coco = str(coco_checkpoint.parent.parent / 'data')
    def knn(dataset, root, out, *flags):
        knn_eval.main(knn_eval.get_knn_parser().parse_args(
            ['--dataset', dataset, '--data-root', root, '--checkpoint', str(coco_checkpoint), '--workers', '0',
             '--device', 'cpu', '--output-dir', str(tmp_path / out), *flags]))
        return json.loads((tmp_path / out / 'results.json').read_text())
    small = knn('custom', coco, 'small')
    assert small['settings']['stream'] == 'all+raw' and small['sources']['stream'].startswith('small data')
    assert set(small['accuracy']) == {'joint', 'motion', 'bone', 'raw_joint', 'raw_motion', 'raw_bone', 'fused'}
    large = knn('synthetic', str(data_root), 'large')
    assert large['settings']['stream'] == 'joint' and set(large['accuracy']) == {'joint'}
    assert large['sources']['stream'] == 'the published protocols'
    assert knn('custom', coco, 'given', '--stream', 'all')['sources']['stream'] == 'command line'
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'custom', '--data-root', coco, '--checkpoint', str(coco_checkpoint), '--workers', '0',
         '--device', 'cpu', '--epochs', '1', '--quiet', '--output-dir', str(tmp_path / 'linear')]))
    assert linear['settings']['stream'] == 'all' and set(linear['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
    assert linear['sources']['stream'] == 'small data: the learned streams fused (docs/protocols.md)'
