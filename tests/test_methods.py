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
