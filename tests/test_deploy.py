"""What a user does with a trained encoder: heads.pth and predict.py, retrieve.py, export.py
(evaluation/heads.py, evaluation/deploy.py)."""
import csv
import pickle
import shutil

import numpy as np
import pytest
import torch

import export
import finetune
import linear_eval
import predict
import retrieve
from evaluation.deploy import CentreCrop, Deployable, export_onnx, export_torchscript
from evaluation.features import StreamFeatures, extract_features
from evaluation.heads import read_heads
from evaluation.knn import knn_predict, with_fusion
from evaluation.pretrained import describe, load_encoders
from feeder.datasets import DownstreamDataset, SkeletonFolder
from feeder.info import dataset_info
from feeder.layouts import get_layout
from models.encoder import StreamEncoder
from models import EncoderConfig, build_encoder
from options.presets import recipe
from utils.checkpoint_io import read_checkpoint

COMMON = ['--dataset', 'synthetic', '--batch-size', '4', '--workers', '0', '--device', 'cpu']


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


@pytest.fixture(scope='module')
def linear_heads(data_root, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp('linear')
    args = linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all', '--epochs', '3',
         '--schedule', '2', '--output-dir', str(out), '--quiet', '--frames', '8', *COMMON])
    return out, linear_eval.main(args)


def test_heads_file_is_self_contained_and_predictions_equal_linear_eval(data_root, linear_heads, tmp_path):
    out, results = linear_heads
    record = read_checkpoint(str(out / 'heads.pth'))  # weights_only=True
    assert record['kind'] == 'linear' and record['streams'] == ['joint', 'motion', 'bone']
    assert record['dataset']['name'] == 'synthetic' and record['frames'] == 8
    assert describe(record)[0] == 'heads'
    args = predict.get_predict_parser().parse_args(
        ['--checkpoint', str(out / 'heads.pth'), '--data-root', str(data_root), '--out', str(tmp_path / 'p.csv'),
         *COMMON])
    predict.main(args)
    rows = _rows(tmp_path / 'p.csv')
    assert rows[0] == ['part', 'name', 'label'] + [f'{c}{i}' for i in range(1, 6) for c in ('pred', 'prob')]
    val = [r for r in rows[1:] if r[0] == 'val']
    folder = SkeletonFolder(str(data_root / 'xsub'), 'val')
    assert [r[1] for r in val] == list(folder.names) and len(rows) - 1 == len(val) + len(SkeletonFolder(
        str(data_root / 'xsub'), 'train'))
    assert all(r[2] == str(label) for r, label in zip(val, folder.labels))  # no class names: numbers
    accuracy = 100 * np.mean([r[2] == r[3] for r in val])
    assert accuracy == pytest.approx(results['accuracy']['fused']['top1'], abs=1e-6)
    probs = np.array([[float(r[4 + 2 * i]) for i in range(5)] for r in val])
    assert np.all(np.diff(probs, axis=1) <= 0) and np.all(probs.sum(1) <= 1 + 1e-5)  # five of the 12 classes


def _fine_tune_and_predict(data_root, tmp_path, *flags):
    """finetune.py with ``flags`` into tmp_path/ft, then predict.py on its heads over the val part:
    the results, predict's arguments and its rows; the rows' top-1 is the fine-tuning's."""
    results = finetune.main(finetune.get_finetune_parser().parse_args(
        ['--data-root', str(data_root), '--output-dir', str(tmp_path / 'ft'), '--quiet', *flags, *COMMON]))
    assert read_heads(str(tmp_path / 'ft' / 'heads.pth'))['kind'] == 'finetune'
    args = predict.get_predict_parser().parse_args(
        ['--checkpoint', str(tmp_path / 'ft' / 'heads.pth'), '--data-root', str(data_root), '--parts', 'val',
         '--out', str(tmp_path / 'p.csv'), *COMMON])
    predict.main(args)
    val = _rows(tmp_path / 'p.csv')[1:]
    assert 100 * np.mean([r[2] == r[3] for r in val]) == pytest.approx(results['accuracy']['top1_mean'], abs=1e-6)
    return results, args, val


def test_finetune_heads_predict_and_unlabelled_clips_have_an_empty_label(data_root, tmp_path):
    _, args, val = _fine_tune_and_predict(data_root, tmp_path, '--checkpoint', 'random', '--epochs', '1', '--stream',
                                          'motion', '--hidden-size', '8', '--num-layers', '1', '--frames', '8')
    # the same clips without labels (a new recording): predicted, label left empty
    root = tmp_path / 'unlabelled'
    shutil.copytree(data_root, root)
    names = SkeletonFolder(str(root / 'xsub'), 'val').names
    with open(root / 'xsub' / 'val_label.pkl', 'wb') as f:
        pickle.dump((list(names), [-1] * len(names)), f)
    args.data_root, args.out = str(root), str(tmp_path / 'q.csv')
    predict.main(args)
    unlabelled = _rows(tmp_path / 'q.csv')[1:]
    assert [r[2] for r in unlabelled] == [''] * len(val) and [r[3:] for r in unlabelled] == [r[3:] for r in val]


def test_finetuning_every_stream_fuses_them_as_its_heads_predict(data_root, tiny_checkpoint, tmp_path):
    results, _, _ = _fine_tune_and_predict(data_root, tmp_path, '--checkpoint', str(tiny_checkpoint), '--epochs', '2',
                                           '--stream', 'all')
    assert results['streams'] == ['joint', 'motion', 'bone'] and results['settings']['stream'] == 'all'
    run = results['runs'][0]
    assert list(run['streams']) == ['joint', 'motion', 'bone', 'fused'] and run['accuracy'] == run['streams']['fused']
    assert read_heads(str(tmp_path / 'ft' / 'heads.pth'))['streams'] == ['joint', 'motion', 'bone']


def test_predict_refuses_a_pretraining_checkpoint(data_root, tiny_checkpoint, tmp_path):
    args = predict.get_predict_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--out', str(tmp_path / 'p.csv'), *COMMON])
    with pytest.raises(ValueError, match='a pretraining checkpoint; expected the heads.pth'):
        predict.main(args)
    assert not (tmp_path / 'p.csv').exists()


def test_retrieval_first_neighbour_is_the_1nn_prediction(data_root, tiny_checkpoint, tmp_path):
    info = dataset_info('synthetic', str(data_root))
    encoders, _, _ = load_encoders(str(tiny_checkpoint), ['joint', 'motion', 'bone'], info)
    feats = {}
    for part in ('train', 'val'):
        clips = DownstreamDataset(SkeletonFolder(str(data_root / 'xsub'), part), frames=8)
        f, labels = extract_features(encoders, clips, torch.device('cpu'), workers=0)
        feats[part] = (with_fusion(f, ['joint', 'motion', 'bone'])['fused'], labels)
    nn1 = knn_predict(feats['train'][0], feats['train'][1], feats['val'][0], ks=(1,))[1]
    train = SkeletonFolder(str(data_root / 'xsub'), 'train')
    for index in range(8):
        args = retrieve.get_retrieve_parser().parse_args(
            ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--index', str(index), '--k', '3',
             '--out', str(tmp_path / 'n.csv'), *COMMON])
        found = retrieve.main(args)
        first = train.names.index(found[0][0])
        assert train.labels[first] == nn1[index].item()
        rows = _rows(tmp_path / 'n.csv')
        assert rows[0] == ['rank', 'name', 'label', 'similarity'] and [r[0] for r in rows[1:]] == ['1', '2', '3']
        assert rows[1][2] == str(train.labels[first])
        assert float(rows[1][3]) >= float(rows[2][3]) >= float(rows[3][3])
    # a training clip as the query is not its own neighbour; --plot draws the query and neighbours
    args = retrieve.get_retrieve_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--part', 'train',
         '--name', train.names[4], '--k', '2', '--stream', 'joint', '--plot', str(tmp_path / 'n.png'), *COMMON])
    found = retrieve.main(args)
    assert train.names[4] not in [name for name, _ in found]
    assert (tmp_path / 'n.png').stat().st_size > 0


def _encoder(settings):
    full = dict(recipe('ntu60', settings['encoder'])[0])
    full.update(settings)
    torch.manual_seed(0)
    return build_encoder(EncoderConfig.from_dict(full), get_layout('ntu25'), 2, 3).eval()


@pytest.mark.parametrize('settings', [
    dict(encoder='gru', hidden_size=8, num_layers=2, gru_mode='published'),
    dict(encoder='gru', hidden_size=8, num_layers=2, gru_mode='bidirectional', gru_pool='mean'),
    dict(encoder='stgcn'),
    dict(encoder='transformer', width=32, depth=2, heads=4),
])
def test_exported_encoders_equal_pytorch_at_other_batches_and_lengths(tmp_path, settings):
    import onnxruntime
    from feeder.modalities import _parent_index
    model = Deployable(CentreCrop(8), StreamFeatures(StreamEncoder(_encoder(settings), 'bone', get_layout('ntu25')))).eval()
    example = torch.randn(2, 3, 16, 25, 2)
    _parent_index.cache_clear()  # as in a fresh process: export must not leave its tracer's tensors behind
    export_onnx(model, example, str(tmp_path / 'm.onnx'), 'features')
    export_torchscript(model, example, str(tmp_path / 'm.pt'))
    session = onnxruntime.InferenceSession(str(tmp_path / 'm.onnx'), providers=['CPUExecutionProvider'])
    scripted = torch.jit.load(str(tmp_path / 'm.pt'))
    for n, t in ((1, 1), (3, 7), (5, 61)):
        x = torch.randn(n, 3, t, 25, 2)
        with torch.no_grad():
            expected = model(x)
            np.testing.assert_allclose(scripted(x).numpy(), expected.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(session.run(None, {'clips': x.numpy()})[0], expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize('fmt', ['onnx', 'torchscript'])
def test_export_script_gives_extract_features_features_and_heads_probabilities(data_root, tiny_checkpoint,
                                                                               linear_heads, tmp_path, fmt):
    import onnxruntime
    out = tmp_path / f'm.{fmt}'
    export.main(export.get_export_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--stream', 'bone', '--format', fmt, '--out', str(out)]))
    run = (lambda x: torch.jit.load(str(out))(torch.from_numpy(x)).detach().numpy()) if fmt == 'torchscript' else \
        (lambda x: onnxruntime.InferenceSession(str(out)).run(None, {'clips': x})[0])
    info = dataset_info('synthetic', str(data_root))
    encoders, _, _ = load_encoders(str(tiny_checkpoint), ['bone'], info)
    folder = SkeletonFolder(str(data_root / 'xsub'), 'val')
    expected, _ = extract_features(encoders, DownstreamDataset(folder, frames=8), torch.device('cpu'), workers=0)
    for i in (0, 3, 7):  # each clip cut to its own frames
        np.testing.assert_allclose(run(folder.clip(i)[None].numpy()), expected['bone'][i:i + 1].numpy(), atol=1e-4)
    heads, _ = linear_heads
    out = tmp_path / f'h.{fmt}'
    export.main(export.get_export_parser().parse_args(
        ['--checkpoint', str(heads / 'heads.pth'), '--format', fmt, '--out', str(out)]))
    args = predict.get_predict_parser().parse_args(
        ['--checkpoint', str(heads / 'heads.pth'), '--data-root', str(data_root), '--parts', 'val', '--out',
         str(tmp_path / 'p.csv'), *COMMON])
    predict.main(args)
    rows = _rows(tmp_path / 'p.csv')[1:]
    for i in (0, 3):
        probs = run(folder.clip(i)[None].numpy())[0]
        assert str(probs.argmax()) == rows[i][3]
        assert probs.max() == pytest.approx(float(rows[i][4]), abs=1e-5)
