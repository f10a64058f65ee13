"""Methods as plug-ins (docs/method.md, "Methods"): a new method is one class and one row of
``models.METHODS``; it pretrains, and every evaluation takes its checkpoint."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import knn_eval
import linear_eval
import models
from feeder.augment import ViewAugment
from feeder.modalities import to_modality
from tests.conftest import run_pretrain


class Toy(nn.Module):
    """A toy method, written as a user would: the joint stream's two views pulled together, the
    batch's embeddings spread apart (alignment and uniformity, Wang and Isola 2020)."""

    VIEWS = ('normal', 'normal')

    def __init__(self, make_encoder, layout, coordinates):
        super().__init__()
        self.layout, self.coordinates = layout, coordinates
        self.encoder_q = nn.ModuleDict({'joint': make_encoder()})

    @classmethod
    def build(cls, make_encoder, args, dataset):
        return cls(make_encoder, dataset.layout, dataset.coordinates)

    def encoders(self):
        return dict(self.encoder_q.items())

    def forward(self, views):
        a, b = (F.normalize(self.encoder_q['joint'](to_modality(v, 'joint', self.layout, self.coordinates)), dim=1)
                for v in views)
        align = (a - b).pow(2).sum(1).mean()
        uniform = torch.pdist(a).pow(2).mul(-2).exp().mean().log()
        return align + uniform, {'align': align.detach(), 'uniform': uniform.detach()}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(models.METHODS, 'toy', Toy)


def test_a_new_method_is_one_class_and_one_row(toy, data_root, tmp_path):
    out = tmp_path / 'toy'
    model = run_pretrain(data_root, out, '--method', 'toy', '--epochs', '2', '--knn-every', '1')
    assert isinstance(model, Toy)
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1] and {'align', 'uniform', 'knn1_joint'} <= set(log[-1])
    assert json.loads((out / 'args.json').read_text())['method'] == 'toy'
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
              '--workers', '0', '--device', 'cpu']
    knn = knn_eval.main(knn_eval.get_knn_parser().parse_args(common + ['--k', '1', '--output-dir', str(tmp_path / 'k')]))
    assert knn['accuracy']['joint']['top1@k=1'] == log[-1]['knn1_joint']  # the monitor saw what evaluation sees
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        common + ['--epochs', '1', '--batch-size', '4', '--quiet', '--output-dir', str(tmp_path / 'l')]))
    assert 0 <= linear['accuracy']['joint']['top1'] <= 100


def test_the_fast_path_is_cmds_alone(toy, data_root, tmp_path):
    with pytest.raises(SystemExit, match='--gru-impl grouped, --overlap-keys and --cuda-graph compute --method cmd, '
                                         'not toy'):
        run_pretrain(data_root, tmp_path / 'x', '--method', 'toy', '--gru-impl', 'grouped')
    from fast.model import FastCMD
    args = type('Args', (), {'method': 'toy'})()
    with pytest.raises(ValueError, match='FastCMD computes CMD, not Toy'):
        models.build_method(args, None, cls=FastCMD)


def test_runs_record_their_method_and_checkpoints_without_one_are_cmd(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--epochs', '1', '--knn-every', '0')
    assert json.loads((out / 'args.json').read_text())['method'] == 'cmd'
    checkpoint = torch.load(out / 'checkpoint.pth', weights_only=True)
    assert checkpoint['args']['method'] == 'cmd'
    del checkpoint['args']['method']  # as written before methods were
    torch.save(checkpoint, out / 'checkpoint.pth')
    model = run_pretrain(data_root, out, '--epochs', '2', '--knn-every', '0', '--auto-resume')
    assert type(model) is models.METHODS['cmd']


def test_views_are_made_by_name():
    clips, lengths = torch.randn(3, 3, 20, 25, 2), torch.tensor([20, 12, 7])
    torch.manual_seed(0)
    three = ViewAugment(25, views=('normal',) * 3, frames=8)(clips, lengths)
    torch.manual_seed(0)
    two = ViewAugment(25, frames=8)(clips, lengths)
    assert len(three) == 3 and all(v.shape == (3, 3, 8, 25, 2) for v in three)
    assert torch.equal(three[0], two[0]) and torch.equal(three[1], two[1])  # drawn in turn, view by view
    with pytest.raises(ValueError, match="unknown view recipe 'wild'; known: normal"):
        ViewAugment(25, views=('normal', 'wild'))


# --- SkeletonCLR -------------------------------------------------------------------------------


def test_skeletonclr_loss_is_moco_infonce_written_out():
    import math

    from feeder.layouts import NTU25
    from models.gru import GRUEncoder
    from models.moco import SkeletonCLR
    torch.manual_seed(0)
    model = SkeletonCLR(lambda: GRUEncoder(150, 8, 1, dim=16), NTU25, ('joint',), dim=16, queue_size=8,
                        momentum_key=0.9, contrast_t=0.07).eval().double()
    x_q, x_k = torch.randn(4, 3, 10, 25, 2, dtype=torch.float64), torch.randn(4, 3, 10, 25, 2, dtype=torch.float64)
    queue = model.queue[0].clone()
    with torch.no_grad():  # the key encoder starts as a copy: its momentum update leaves it so
        q = F.normalize(model.encoder_q['joint'](x_q), dim=1)
        k = F.normalize(model.encoder_q['joint'](x_k), dim=1)
    loss, stats = model((x_q, x_k))
    expected = 0.0
    for i in range(4):
        positive = math.exp(float(q[i] @ k[i]) / 0.07)
        negatives = sum(math.exp(float(q[i] @ queue[:, j]) / 0.07) for j in range(8))
        expected += -math.log(positive / (positive + negatives)) / 4
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-9) and torch.equal(stats['infonce_joint'], loss.detach())
    torch.testing.assert_close(model.queue[0, :, :4], k.T)  # the keys entered the queue


def test_skeletonclrs_crop_is_a_window_of_the_mirrored_clip():
    import numpy as np

    from feeder.augment import padded_crop, resize_window
    torch.manual_seed(0)
    clips, lengths = torch.randn(64, 3, 40, 5, 1), torch.randint(3, 41, (64,))
    frames, pad = 18, 3
    out = padded_crop(clips, lengths, frames)
    resized = resize_window(clips, torch.zeros_like(lengths), lengths, frames).numpy()
    starts = []
    for i in range(64):
        mirrored = np.pad(resized[i], ((0, 0), (pad, pad), (0, 0), (0, 0)), mode='reflect')
        found = [s for s in range(2 * pad + 1) if np.array_equal(mirrored[:, s:s + frames], out[i].numpy())]
        assert found, i
        starts.append(found[0])
    assert set(starts) == set(range(2 * pad + 1))  # every start is drawn


def test_skeletonclr_pretrains_with_its_recipe_and_evaluates(data_root, tmp_path):
    out = tmp_path / 'skeletonclr'
    model = run_pretrain(data_root, out, '--method', 'skeletonclr', '--epochs', '1', '--frames', '16',
                         '--knn-every', '0')
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['encoder'], args['modalities'], args['shear']) == ('skeletonclr', 'stgcn',
                                                                                     ['joint'], 0.5)
    assert list(model.encoders()) == ['joint'] and type(model).VIEWS == ('skeletonclr', 'skeletonclr')
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
              '--workers', '0', '--device', 'cpu']
    knn = knn_eval.main(knn_eval.get_knn_parser().parse_args(common + ['--k', '1', '--output-dir', str(tmp_path / 'k')]))
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        common + ['--epochs', '1', '--batch-size', '4', '--quiet', '--output-dir', str(tmp_path / 'l')]))
    assert 0 <= knn['accuracy']['joint']['top1@k=1'] <= 100 and 0 <= linear['accuracy']['joint']['top1'] <= 100


# --- CrosSCLR ----------------------------------------------------------------------------------


def test_crossclrs_loss_is_its_formula_written_out():
    import math

    from models.losses import cross_positive_nce
    torch.manual_seed(0)
    n, d, size, topk, t = 3, 8, 10, 2, 0.1
    q, k = F.normalize(torch.randn(n, d, dtype=torch.float64), dim=1), F.normalize(torch.randn(n, d), dim=1).double()
    queue_u, queue_v = (F.normalize(torch.randn(d, size, dtype=torch.float64), dim=0) for _ in range(2))
    q_v = F.normalize(torch.randn(n, d, dtype=torch.float64), dim=1)
    s_u, s_v = q @ queue_u, q_v @ queue_v
    expected = 0.0
    for i in range(n):
        z = [float(q[i] @ k[i])] + s_u[i].tolist() + (s_u[i] * s_v[i]).tolist()
        z = [x / t for x in z]
        log_norm = math.log(sum(math.exp(x) for x in z))
        neighbours = sorted(range(size), key=lambda j: -float(s_v[i, j]))[:topk]
        positives = [0] + [1 + j for j in neighbours] + [1 + size + j for j in neighbours]
        expected += -sum(z[p] - log_norm for p in positives) / len(positives) / n
    assert float(cross_positive_nce(q, k, s_u, s_v, topk, t)) == pytest.approx(expected, rel=1e-12)


def test_crossclr_mines_positives_from_its_mining_epoch():
    from feeder.layouts import NTU25
    from models.gru import GRUEncoder
    from models.losses import cross_positive_nce
    from models.moco import CrosSCLR
    torch.manual_seed(0)
    model = CrosSCLR(lambda: GRUEncoder(150, 8, 1, dim=16), NTU25, dim=16, queue_size=8, topk=2,
                     mining_epoch=3).eval().double()
    views = tuple(torch.randn(4, 3, 10, 25, 2, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        q, k = model.embed(*views)
    queue = model.queue.clone()
    model.set_epoch(2)
    warm, stats = model.objective(q, k, queue)
    assert 'cross_joint' not in stats
    torch.testing.assert_close(warm, sum(stats[f'infonce_{m}'] for m in model.modalities))
    model.set_epoch(3)
    mined, stats = model.objective(q, k, queue)
    sims = {m: q[m] @ queue[i] for i, m in enumerate(model.modalities)}
    expected = sum(sum(cross_positive_nce(q[u], k[u], sims[u], sims[v], 2, 0.07) for v in model.modalities if v != u)
                   / 2 for u in model.modalities)
    torch.testing.assert_close(mined, expected)
    assert {'cross_joint', 'cross_motion', 'cross_bone'} <= set(stats)


def test_crossclr_pretrains_with_its_recipe_and_evaluates_every_stream(data_root, tmp_path):
    out = tmp_path / 'crossclr'
    run_pretrain(data_root, out, '--method', 'crossclr', '--epochs', '2', '--mining-epoch', '1', '--frames', '16',
                 '--knn-every', '0')
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['encoder'], args['shear'], args['mining_epoch']) == ('crossclr', 'stgcn', 0.5, 1)
    from options.presets import pretrain_recipe
    published = pretrain_recipe('ntu60', 'stgcn', method='crossclr')[0]  # (the tiny run's --topk is 4)
    assert (published['topk'], published['frames'], published['epochs'], published['queue_size'],
            published['modalities']) == (1, 50, 300, 32768, ['joint', 'motion', 'bone'])
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert 'cross_joint' not in log[0] and {'cross_joint', 'cross_motion', 'cross_bone'} <= set(log[1])
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
              '--workers', '0', '--device', 'cpu', '--stream', 'all']
    knn = knn_eval.main(knn_eval.get_knn_parser().parse_args(common + ['--k', '1', '--output-dir', str(tmp_path / 'k')]))
    assert set(knn['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
