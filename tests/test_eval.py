import argparse
import pickle
import json

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import DataLoader, TensorDataset

import finetune
import knn_eval
import linear_eval
import predict
from evaluation.classifier import Classifier, fit_classifiers
from feeder.layouts import NTU25
from finetune import balanced_subset
from models.cmd import CMD
from models.encoder import StreamEncoder
from options.presets import LINEAR
from evaluation.pretrained import load_encoders
from feeder.datasets import SkeletonFolder
from tests.conftest import gru, with_defaults
from tests.reference import published_gru_features
from tests.golden import GOLDEN
from evaluation.knn import knn_predict

COMMON = ['--dataset', 'synthetic', '--frames', '8', '--batch-size', '4', '--workers', '0', '--device', 'cpu']


@pytest.mark.parametrize('k', [1, 2, 4, 5])
def test_knn_equals_scikit_learn_including_vote_ties(k):
    gen = torch.Generator().manual_seed(k)
    train, test = torch.randn(300, 16, generator=gen), torch.randn(120, 16, generator=gen)
    labels = torch.randint(0, 4, (300,), generator=gen)
    ours = knn_predict(train, labels, test, ks=[k], chunk=32)[k]
    sk = KNeighborsClassifier(n_neighbors=k, metric='cosine').fit(train.numpy(), labels.numpy())
    np.testing.assert_array_equal(ours.numpy(), sk.predict(test.numpy()))


def test_knn_several_k_in_one_pass_and_errors():
    train, test = torch.randn(50, 8), torch.randn(10, 8)
    labels = torch.arange(50) % 3
    both = knn_predict(train, labels, test, ks=[1, 7])
    assert torch.equal(both[7], knn_predict(train, labels, test, ks=[7])[7])
    with pytest.raises(ValueError, match='exceeds the 50 training samples'):
        knn_predict(train, labels, test, ks=[51])


def test_frozen_training_leaves_encoder_bit_identical():
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 8, 25, 2), torch.randint(0, 3, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    args = argparse.Namespace(**dict(LINEAR, epochs=2, schedule=[1], eval_every=1, quiet=True))
    for frozen in (True, False):
        encoder = gru(8, 2, dim=16)
        if frozen:
            for p in encoder.parameters():
                p.requires_grad = False
        classifier = Classifier(StreamEncoder(encoder, 'joint', NTU25), 3)
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        fit_classifiers({'joint': classifier}, loader, loader, args, torch.device('cpu'), frozen=frozen)
        same = all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())
        # the control (fine-tuning) shows the check would see a change
        assert same == frozen


def _released_file(tmp_path, model):
    state = {f'module.{k}': v for k, v in model.released_state_dict().items()}
    path = tmp_path / 'checkpoint_0450.pth.tar'
    torch.save({'epoch': 451, 'state_dict': state, 'optimizer': {}}, path)
    return path, model.released_state_dict()


def test_released_layout_checkpoint_matches_the_frame_by_frame_oracle(tmp_path):
    torch.manual_seed(0)
    model = with_defaults(CMD, lambda: gru(12, 3, dim=32, mlp=True), dim=32, queue_size=16, topk=4)
    for enc in model.encoder_q.values():  # non-trivial BatchNorm statistics
        enc.train()(torch.randn(8, 3, 10, 25, 2))
    path, state = _released_file(tmp_path, model)
    encoders, info, report = load_encoders(str(path), ['joint', 'motion', 'bone'], 'ntu60', frames=10)
    assert info['kind'] == 'released' and not any(r['missing'] for r in report.values())
    x = torch.randn(5, 3, 10, 25, 2)
    for stream, suffix in (('joint', ''), ('motion', '_motion'), ('bone', '_bone')):
        published = torch.nn.GRU(150, 12, 3, batch_first=True, bidirectional=True)
        published.load_state_dict({k.split('encoder.gru.')[1]: v for k, v in state.items()
                             if k.startswith(f'encoder_q{suffix}.encoder.gru.')})
        norm = torch.nn.BatchNorm1d(150).eval()
        norm.load_state_dict({k.split('input_norm.')[1]: v for k, v in state.items()
                              if k.startswith(f'encoder_q{suffix}.input_norm.')})
        with torch.no_grad():
            torch.testing.assert_close(encoders[stream].encoder.features(x), published_gru_features(published, norm, x))


def test_golden_after_state_gives_the_published_eval_feature(tmp_path):
    golden = torch.load(GOLDEN, weights_only=True)
    path = tmp_path / 'released.pth.tar'
    torch.save({'epoch': 1, 'state_dict': golden['state_dict_after_one_sgd_step']}, path)
    encoders, _, _ = load_encoders(str(path), ['joint'], 'ntu60')
    with torch.no_grad():
        feature = encoders['joint'].features(golden['inputs']['view_query'])
    torch.testing.assert_close(feature, golden['joint_feature_eval_mode_view_query'], atol=1e-5, rtol=1e-5)


def test_unsafe_or_foreign_checkpoints_are_refused(tmp_path):
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'model': {}, 'args': argparse.Namespace(a=1)}, unsafe)
    with pytest.raises(ValueError, match=r'unsafe.pth: holds argparse.Namespace, not only tensors.*refused') as e:
        load_encoders(str(unsafe), ['joint'], 'ntu60')
    assert 'weights_only' not in str(e.value)  # never advice to load unsafely
    good = tmp_path / 'good.pth'
    torch.save({'model': {'w': torch.zeros(1000)}, 'args': {}}, good)
    broken = {'truncated.pth': good.read_bytes()[:2000], 'empty.pth': b'', 'text.pth': b'hello',
              'plain.pth': pickle.dumps({'a': 1})}
    reasons = {'truncated.pth': 'a damaged or truncated PyTorch file', 'empty.pth': 'the file is empty',
               'text.pth': 'not a PyTorch checkpoint', 'plain.pth': 'not a PyTorch checkpoint'}
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f'--checkpoint .*{name}: unreadable: {reasons[name]}') as e:
            load_encoders(str(tmp_path / name), ['joint'], 'ntu60')
        assert 'weights_only' not in str(e.value)
    foreign = tmp_path / 'foreign.pth'
    torch.save({'net': {'conv.weight': torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match=r"not a pretraining checkpoint.*\['net'\]"):
        load_encoders(str(foreign), ['joint'], 'ntu60')
    with pytest.raises(FileNotFoundError, match='no such file'):
        load_encoders(str(tmp_path / 'missing.pth'), ['joint'], 'ntu60')


def test_another_layout_is_mapped_onto_the_checkpoints(tiny_checkpoint):
    encoders, info, _ = load_encoders(str(tiny_checkpoint), ['joint'], 'pku2')  # the same skeleton: as it is
    assert info['pretrain_args']['dataset'] == 'synthetic' and info['mapping'] is None
    encoders, info, _ = load_encoders(str(tiny_checkpoint), ['joint'], 'ucla')  # Kinect v1, one person
    assert info['mapping']['source'] == 'kinect_v1_20' and info['mapping']['target'] == 'ntu25'
    clips = torch.randn(2, 3, 8, 20, 1)
    made = encoders['joint'].adapt(clips)  # NTU's second person empty
    assert made.shape == (2, 3, 8, 25, 2) and not made[..., 1].any()
    # Kinect v1's shoulder centre is NTU's spine_shoulder; the top of NTU's neck, its hand tips and thumbs zero
    torch.testing.assert_close(made[:, :, :, 20, 0], clips[:, :, :, 2, 0])
    assert not made[:, :, :, 2].any() and not made[:, :, :, 21:].any()


def test_balanced_subset():
    labels = np.repeat(np.arange(5), [100, 40, 7, 1, 12])
    subset = balanced_subset(labels, 0.1, seed=0)
    assert np.bincount(labels[subset]).tolist() == [10, 4, 1, 1, 1]
    assert np.array_equal(subset, balanced_subset(labels, 0.1, seed=0))
    assert not np.array_equal(subset, balanced_subset(labels, 0.1, seed=1))
    assert len(balanced_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError, match='label-fraction'):
        balanced_subset(labels, 0, seed=0)


def test_knn_eval_results(data_root, tiny_checkpoint, tmp_path):
    args = knn_eval.get_knn_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all',
         '--k', '1', '3', '--output-dir', str(tmp_path), '--tsne', str(tmp_path / 'tsne.png'), *COMMON])
    knn_eval.main(args)
    assert (tmp_path / 'tsne.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['protocol'] == 'knn' and results['encoder_kind'] == 'ours'
    assert len(results['checkpoint_sha256']) == 16 and results['streams'] == ['joint', 'motion', 'bone']
    assert set(results['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
    assert set(results['accuracy']['fused']) == {'top1@k=1', 'top1@k=3'}
    assert all(0 <= v <= 100 for acc in results['accuracy'].values() for v in acc.values())
    # next to the checkpoint when no output folder is given
    args.output_dir, args.stream, args.tsne = None, 'joint', None
    knn_eval.main(args)
    assert (tiny_checkpoint.parent / 'checkpoint_knn_synthetic_xsub_joint.json').exists()


def test_knn_and_predict_report_per_class_and_draw_the_confusion(data_root, tiny_checkpoint, tmp_path):
    args = knn_eval.get_knn_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all', '--k', '3', '1',
         '--output-dir', str(tmp_path / 'knn'), '--plot-confusion', str(tmp_path / 'knn.png'), *COMMON])
    results = knn_eval.main(args)
    assert results['settings']['report_k'] == 3 and (tmp_path / 'knn.png').stat().st_size > 0
    assert_reports_agree(results, {s: a['top1@k=3'] for s, a in results['accuracy'].items()})
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all', '--epochs', '1',
         '--output-dir', str(tmp_path / 'linear'), '--quiet', *COMMON]))
    import predict
    out = tmp_path / 'predictions.csv'
    predict.main(predict.get_predict_parser().parse_args(
        ['--checkpoint', str(tmp_path / 'linear' / 'heads.pth'), '--data-root', str(data_root), '--dataset',
         'synthetic', '--protocol', 'xsub', '--parts', 'val', '--out', str(out), '--device', 'cpu', '--workers', '0',
         '--plot-confusion', str(tmp_path / 'predict.png')]))
    report = json.loads((tmp_path / 'predictions.json').read_text())['parts']['val']
    assert report['top1'] == pytest.approx(linear['accuracy']['fused']['top1'], abs=1e-4)  # the same fusion
    assert report['confusion']['fused'] == linear['confusion']['fused']
    assert (tmp_path / 'predict.png').stat().st_size > 0
    with pytest.raises(SystemExit, match='expected a .csv file'):
        predict.main(predict.get_predict_parser().parse_args(
            ['--checkpoint', str(tmp_path / 'linear' / 'heads.pth'), '--data-root', str(data_root), '--dataset',
             'synthetic', '--protocol', 'xsub', '--out', str(tmp_path / 'p.json')]))


def test_linear_eval_results(data_root, tiny_checkpoint, tmp_path):
    args = linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all', '--epochs', '2',
         '--schedule', '1', '--output-dir', str(tmp_path), '--quiet', *COMMON])
    linear_eval.main(args)
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['protocol'] == 'linear' and set(results['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
    assert set(results['accuracy']['joint']) == {'top1', 'top5'}
    assert results['settings']['lr'] == 0.1 and results['settings']['frames'] == 8
    assert len(results['history']) == 2 and 'best_test_epoch_for_reference' in results
    assert_reports_agree(results, {s: a['top1'] for s, a in results['accuracy'].items()})


def assert_reports_agree(results, top1):
    """The per-class report of ``results`` against its own top-1 ({stream: %}): each stream's
    confusion matrix holds every test clip, its diagonal the correct ones, and each class's top-1
    is its row's diagonal share."""
    names = results['classes']
    assert set(results['per_class']) == set(results['confusion']) == set(top1)
    for stream, rows in results['confusion'].items():
        counts = np.array(rows)
        assert counts.shape == (len(names), len(names)) and counts.sum() == results.get('test_samples', counts.sum())
        assert 100 * np.trace(counts) / counts.sum() == pytest.approx(top1[stream], abs=1e-4)
        for c, name in enumerate(names):
            share = results['per_class'][stream][name]
            assert share == (None if counts[c].sum() == 0 else pytest.approx(100 * counts[c, c] / counts[c].sum()))


def test_class_report_equals_scikit_learn():
    from sklearn.metrics import confusion_matrix as sk_confusion
    from evaluation.report import class_report, confusion_matrix
    from feeder.info import dataset_info
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 60, 500), rng.integers(0, 60, 500)
    labels[labels == 7] = 8  # a class without test clips
    ours = confusion_matrix(torch.as_tensor(predicted), torch.as_tensor(labels), 60)
    assert np.array_equal(ours.numpy(), sk_confusion(labels, predicted, labels=range(60)))
    report = class_report({'joint': torch.as_tensor(predicted)}, torch.as_tensor(labels), dataset_info('ntu60'))
    assert report['classes'] == [str(c) for c in range(60)] and report['per_class']['joint']['7'] is None
    recall = (predicted == labels)[labels == 3].mean() * 100
    assert report['per_class']['joint']['3'] == pytest.approx(recall)


def test_finetune_results_and_random_baseline(data_root, tmp_path):
    def tune(out, *flags):
        finetune.main(finetune.get_finetune_parser().parse_args(
            ['--checkpoint', 'random', '--data-root', str(data_root), '--epochs', '1', '--output-dir', str(out),
             '--quiet', *flags, *COMMON]))
        return json.loads((out / 'results.json').read_text())

    results = tune(tmp_path / 'half', '--label-fraction', '0.5', '--repeats', '2')
    assert results['encoder_kind'] == 'random' and results['checkpoint'] is None
    assert [r['seed'] for r in results['runs']] == [42, 43]
    assert set(results['accuracy']) == {'top1_mean', 'top1_std', 'top5_mean'}
    # with every label the subsets agree: the seeds still train differently (head, order, augmentations),
    # and a repeat is its seed's run alone
    every = tune(tmp_path / 'all', '--label-fraction', '1', '--repeats', '2')
    losses = [r['history'][0]['train_loss'] for r in every['runs']]
    assert losses[0] != losses[1]
    alone = tune(tmp_path / 'alone', '--label-fraction', '1', '--seed', '43')
    assert alone['runs'][0]['history'] == every['runs'][1]['history']


def test_a_training_set_smaller_than_a_batch_trains_on_one_batch_of_it(data_root, tiny_checkpoint, tmp_path, capsys):
    common = [c for c in COMMON if c not in ('--batch-size', '4')]
    args = linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'joint', '--epochs', '1',
         '--output-dir', str(tmp_path / 'linear'), '--quiet', *common])
    results = linear_eval.main(args)
    clips = len(SkeletonFolder(str(data_root / 'xsub'), 'train'))
    assert clips < 64 and results['settings']['batch_size'] == clips
    why = f'one batch of all {clips} training clips, fewer than --batch-size 64'
    assert results['sources']['batch_size'] == why
    assert f'One batch of all {clips} training clips' in capsys.readouterr().out
    assert results['sources']['lr'] == 'evaluation recipe'
    args = finetune.get_finetune_parser().parse_args(
        ['--checkpoint', 'random', '--data-root', str(data_root), '--epochs', '1', '--label-fraction', '0.25',
         '--output-dir', str(tmp_path / 'ft'), '--quiet', '--batch-size', '16', *common])
    results = finetune.main(args)
    labelled = results['runs'][0]['labelled']
    assert labelled < 16 and results['settings']['batch_size'] == labelled
    assert results['sources']['batch_size'].startswith(f'one batch of all {labelled} training clips')
    # the recipe's batch (not given) follows the few-labels rule instead: 64 halved to no less than 4
    args = finetune.get_finetune_parser().parse_args(
        ['--checkpoint', 'random', '--data-root', str(data_root), '--epochs', '1', '--label-fraction', '0.25',
         '--output-dir', str(tmp_path / 'ft_rule'), '--quiet', *common])
    results = finetune.main(args)
    assert results['settings']['batch_size'] == 4 and results['sources']['batch_size'] == \
        f"few-labels rule: the recipe's 64 halved until the {labelled} labelled clips make 4 batches, to no less than 4"


def test_the_few_labels_batch_is_halved_until_four_batches():
    from options.presets import few_labels_batch
    # written out: the largest of 64, 32, ..., 4 that the labelled clips fill 4 times, else 4
    for clips in (1, 10, 16, 17, 63, 64, 72, 100, 255, 256, 400, 10000):
        expected = next((b for b in (64, 32, 16, 8) if clips >= 4 * b), 4)
        assert few_labels_batch(clips, 64)[0] == expected, clips
    assert few_labels_batch(72, 64)[0] == 16 and few_labels_batch(16, 64)[0] == 4  # the validation splits at 10%
    assert few_labels_batch(100, 48)[0] == 24  # a batch that is no power of two is halved all the same


@pytest.mark.parametrize('encoder_args', [['--encoder', 'stgcn'], ['--gru-mode', 'bidirectional']])
def test_other_encoders_pretrain_and_evaluate(data_root, tmp_path, encoder_args):
    from tests.conftest import run_pretrain
    model = run_pretrain(data_root, tmp_path / 'pre', '--epochs', '1', *encoder_args)
    checkpoint = tmp_path / 'pre' / 'checkpoint.pth'
    encoders, info, _ = load_encoders(str(checkpoint), ['bone'], 'synthetic')
    for key, value in encoders['bone'].encoder.state_dict().items():
        assert torch.equal(value, model.encoder_q['bone'].state_dict()[key]), key
    args = knn_eval.get_knn_parser().parse_args(
        ['--checkpoint', str(checkpoint), '--data-root', str(data_root), '--output-dir', str(tmp_path / 'knn'),
         '--stream', 'bone', *COMMON])
    assert 0 <= knn_eval.main(args)['accuracy']['bone']['top1@k=1'] <= 100


def test_features_from_python_equal_the_knn_features(tiny_checkpoint, data_root):
    from evaluation.features import extract_features
    from evaluation.pretrained import feature_extractors
    from feeder.augment import center_crop_resize
    from feeder.datasets import DownstreamDataset, SkeletonFolder, collate_clips
    modules, frames = feature_extractors(str(tiny_checkpoint), 'synthetic', streams=('joint', 'bone'))
    folder = SkeletonFolder(str(data_root / 'xsub'), 'val')
    encoders, _, _ = load_encoders(str(tiny_checkpoint), ['joint', 'bone'], 'synthetic')
    expected, _ = extract_features(encoders, DownstreamDataset(folder, frames=frames), torch.device('cpu'), workers=0)
    # clips of different lengths, zero-padded into one batch and prepared as kNN prepares them
    clips, lengths = collate_clips([(folder.clip(i), folder.clip(i).shape[1]) for i in range(3)])
    batch = center_crop_resize(clips, lengths, frames)
    for stream, module in modules.items():
        torch.testing.assert_close(module(batch), expected[stream][:3])
    assert frames == 8


def _raw_features_by_hand(folder, frames, layout):
    """The prepared clips as kNN sees them, written out per clip: the centre 95% (s = int(0.05 n / 2)
    frames off each end) resized with the published bilinear interpolation, then each stream's
    transform, flattened."""
    import torch.nn.functional as F
    parents = [p for _, p in layout.bone_pairs]
    out = {'joint': [], 'motion': [], 'bone': []}
    for i in range(len(folder)):
        clip = folder.clip(i).double()  # (C, n, V, M)
        n = clip.shape[1]
        s = int(0.05 * n / 2)
        window = clip[:, s:n - s]
        c, t, v, m = window.shape
        x = F.interpolate(window.permute(0, 2, 3, 1).reshape(1, c * v * m, t, 1), size=(frames, 1), mode='bilinear',
                          align_corners=False).reshape(c, v, m, frames).permute(0, 3, 1, 2)
        motion = torch.zeros_like(x)
        motion[:, :-1] = x[:, 1:] - x[:, :-1]
        out['joint'].append(x.flatten())
        out['motion'].append(motion.flatten())
        out['bone'].append((x - x[:, :, parents]).flatten())
    return {k: torch.stack(v).numpy() for k, v in out.items()}


def test_raw_baseline_equals_the_prepared_coordinates_by_hand(data_root, tmp_path):
    from feeder.datasets import SkeletonFolder
    args = knn_eval.get_knn_parser().parse_args(
        ['--checkpoint', 'raw', '--data-root', str(data_root), '--stream', 'all', '--output-dir', str(tmp_path),
         *COMMON])
    results = knn_eval.main(args)
    assert results['encoder_kind'] == 'raw' and results['checkpoint'] is None and results['settings']['frames'] == 8
    feats, labels = {}, {}
    for part in ('train', 'val'):
        folder = SkeletonFolder(str(data_root / 'xsub'), part)
        feats[part], labels[part] = _raw_features_by_hand(folder, 8, NTU25), folder.labels
        unit = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in feats[part].items()}
        feats[part]['fused'] = np.concatenate([unit[s] for s in ('joint', 'motion', 'bone')], axis=1)
    for stream, features in feats['train'].items():
        knn = KNeighborsClassifier(n_neighbors=1, metric='cosine').fit(features, labels['train'])
        expected = (knn.predict(feats['val'][stream]) == labels['val']).mean() * 100
        assert results['accuracy'][stream]['top1@k=1'] == pytest.approx(expected, abs=1e-4), stream

    linear = linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', 'raw', '--data-root', str(data_root), '--stream', 'joint', '--epochs', '1',
         '--output-dir', str(tmp_path / 'linear'), '--quiet', *COMMON])
    assert linear_eval.main(linear)['encoder_kind'] == 'raw'
    # fine-tuning "raw": a linear head on the coordinates, on a class-balanced share of the labels
    tuned = finetune.main(finetune.get_finetune_parser().parse_args(
        ['--checkpoint', 'raw', '--data-root', str(data_root), '--output-dir', str(tmp_path / 'ft'), '--epochs', '1',
         '--label-fraction', '0.5', '--repeats', '2', '--quiet', *COMMON]))
    labels = SkeletonFolder(str(data_root / 'xsub'), 'train').labels
    assert tuned['encoder_kind'] == 'raw' and [r['seed'] for r in tuned['runs']] == [tuned['settings']['seed'] + k
                                                                                     for k in (0, 1)]
    assert all(r['labelled'] == len(balanced_subset(labels, 0.5, r['seed'])) for r in tuned['runs'])
    head = torch.load(tmp_path / 'ft' / 'heads.pth', weights_only=True)['heads']['joint']
    assert sorted(head) == ['head.bias', 'head.weight'] and head['head.weight'].shape[1] == 3 * 8 * 25 * 2


def test_topk_accuracy_counts_targets_among_the_top_scores():
    from models.losses import topk_accuracy
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    labels = torch.tensor([1, 2, 1, 0])
    # by hand: top-1 hits rows 0 and 3; top-2 also row 2 (0.3 is second), not row 1 (0.2 is last)
    assert topk_accuracy(scores, labels).item() == 50 and topk_accuracy(scores, labels, 2).item() == 75
    assert topk_accuracy(scores).item() == 50  # index 0, the contrastive positive: rows 1 and 3


def test_the_raw_coordinates_as_more_streams(data_root, tiny_checkpoint, tmp_path):
    """``--stream all+raw``: a raw stream per modality, each what ``--checkpoint raw`` gives in it,
    fused with the learned ones; its classifier reads the data's own clips in predictions too."""
    def knn(checkpoint, stream, out):
        return knn_eval.main(knn_eval.get_knn_parser().parse_args(
            ['--checkpoint', checkpoint, '--data-root', str(data_root), '--stream', stream, '--k', '1',
             '--output-dir', str(tmp_path / out), *COMMON]))['accuracy']
    both = knn(str(tiny_checkpoint), 'all+raw', 'both')
    assert set(both) == {'joint', 'motion', 'bone', 'raw_joint', 'raw_motion', 'raw_bone', 'fused'}
    coordinates = knn('raw', 'all', 'raw')
    assert all(both[f'raw_{m}'] == coordinates[m] for m in ('joint', 'motion', 'bone'))
    assert both['joint'] == knn(str(tiny_checkpoint), 'joint', 'joint')['joint']
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--checkpoint', str(tiny_checkpoint), '--data-root', str(data_root), '--stream', 'all+raw', '--epochs', '2',
         '--quiet', '--output-dir', str(tmp_path / 'linear'), *COMMON]))
    heads = torch.load(tmp_path / 'linear' / 'heads.pth', weights_only=True)
    assert heads['streams'] == ['joint', 'motion', 'bone', 'raw_joint', 'raw_motion', 'raw_bone']
    predict.main(predict.get_predict_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint',
         str(tmp_path / 'linear' / 'heads.pth'), '--parts', 'val', '--workers', '0', '--device', 'cpu', '--out',
         str(tmp_path / 'p.csv')]))
    top1 = json.loads((tmp_path / 'p.json').read_text())['parts']['val']['top1']
    assert top1 == pytest.approx(linear['accuracy']['fused']['top1'], abs=1e-6)
