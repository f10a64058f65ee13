"""Methods as plug-ins (docs/method.md, "Methods"): a new method is one class and one row of
``models.METHODS``; it pretrains, and every evaluation takes its checkpoint."""
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

import knn_eval
import linear_eval
import models
from feeder.augment import center_crop_resize
from models.encoder import Setting, StreamEncoder
from models.method import Method, normal
from tests.conftest import augment, gru, run_pretrain, with_defaults


def reversed_or_not(augment, clips, num_frames, draws=None):
    """The toy's own view recipe: the whole clip resized to ``frames``, played backwards with
    probability 1/2."""
    x = center_crop_resize(clips, num_frames, augment.frames, 1.0)
    backwards = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(backwards[:, None, None, None, None], x.flip(2), x)


class Toy(Method):
    """A toy method, written as a user would, in one file with its own setting, recipe and view: the
    joint stream's two views pulled together, the batch's embeddings spread apart (alignment and
    uniformity, Wang and Isola 2020), the uniformity weighted by its own ``--uniformity``."""

    VIEWS = (reversed_or_not, reversed_or_not)
    SETTINGS = (Setting('uniformity', float, 1.0, "toy: the uniformity term's weight"),)
    RECIPE = dict(lr=0.05, frames=24)

    def __init__(self, make_encoder, layout, coordinates, uniformity):
        super().__init__()
        self.joint = StreamEncoder(make_encoder(), 'joint', layout, coordinates)
        self.uniformity = uniformity

    @classmethod
    def build(cls, make_encoder, args, dataset):
        return cls(make_encoder, dataset.layout, dataset.coordinates, args.uniformity)

    def encoders(self):
        return {'joint': self.joint}

    def forward(self, views):
        a, b = (F.normalize(self.joint(v), dim=1) for v in views)
        align = (a - b).pow(2).sum(1).mean()
        uniform = torch.pdist(a).pow(2).mul(-2).exp().mean().log()
        return align + self.uniformity * uniform, {'align': align.detach(), 'uniform': uniform.detach()}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(models.METHODS, 'toy', Toy)


def evaluate(data_root, out, tmp_path, *extra):
    """``knn_eval.py --k 1`` and a one-epoch ``linear_eval.py`` of the checkpoint in ``out``: their results."""
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
              '--workers', '0', '--device', 'cpu', *extra]
    knn = knn_eval.main(knn_eval.get_knn_parser().parse_args(common + ['--k', '1', '--output-dir', str(tmp_path / 'k')]))
    linear = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        common + ['--epochs', '1', '--batch-size', '4', '--quiet', '--output-dir', str(tmp_path / 'l')]))
    return knn, linear


def test_a_new_method_is_one_class_and_one_row(toy, data_root, tmp_path):
    out = tmp_path / 'toy'
    model = run_pretrain(data_root, out, '--method', 'toy', '--epochs', '2', '--knn-every', '1', '--uniformity', '0.5')
    assert isinstance(model, Toy) and model.uniformity == 0.5
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1] and {'align', 'uniform', 'knn1_joint'} <= set(log[-1])
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['uniformity'], args['sources']['uniformity']) == ('toy', 0.5, 'command line')
    assert (args['lr'], args['sources']['lr']) == (0.05, 'method recipe (toy)')  # its recipe row
    assert not {'queue_size', 'topk', 'mask_ratio', 'width'} & set(args)  # nothing it does not read
    with pytest.raises(SystemExit, match='--uniformity is read by --method toy, not by --method cmd'):
        run_pretrain(data_root, tmp_path / 'cmd', '--epochs', '1', '--uniformity', '0.5')
    resumed = run_pretrain(data_root, out, '--method', 'toy', '--epochs', '3', '--knn-every', '1', '--auto-resume')
    assert isinstance(resumed, Toy) and resumed.uniformity == 0.5  # resumes as it started
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert [r['epoch'] for r in log] == [0, 1, 2]
    knn, linear = evaluate(data_root, out, tmp_path)
    assert knn['accuracy']['joint']['top1@k=1'] == log[-1]['knn1_joint']  # the monitor saw what evaluation sees
    assert 0 <= linear['accuracy']['joint']['top1'] <= 100


def test_the_fast_model_is_cmds_alone(toy, data_root, tmp_path):
    with pytest.raises(SystemExit, match='--gru-impl grouped and --overlap-keys compute --method cmd, not toy'):
        run_pretrain(data_root, tmp_path / 'x', '--method', 'toy', '--gru-impl', 'grouped')
    from fast.model import FastCMD
    args = type('Args', (), {'method': 'toy'})()
    with pytest.raises(ValueError, match='FastCMD computes CMD, not Toy'):
        models.build_method(args, None, cls=FastCMD)


def test_no_code_outside_the_methods_names_one():
    # what pretrains, evaluates and resolves settings reads what a method declares; the fast path
    # names the one method it computes in fast/model.py alone (docs/code.md)
    import glob
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = re.compile(r'\b(' + '|'.join(models.METHODS) + r')\b', re.IGNORECASE)
    files = ['pretrain.py', 'engine.py', 'fast/settings.py', 'fast/step.py', 'fast/self_check.py',
             *glob.glob('evaluation/*.py', root_dir=root), *glob.glob('options/*.py', root_dir=root)]
    found = [f'{name}:{i}: {line.strip()}' for name in files
             for i, line in enumerate(open(os.path.join(root, name)).read().splitlines(), 1) if names.search(line)]
    assert not found, '\n'.join(found)


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


def test_views_are_made_by_their_recipes():
    clips, lengths = torch.randn(3, 3, 20, 25, 2), torch.tensor([20, 12, 7])
    torch.manual_seed(0)
    three = augment((normal,) * 3, frames=8)(clips, lengths)
    torch.manual_seed(0)
    two = augment((normal, normal), frames=8)(clips, lengths)
    assert len(three) == 3 and all(v.shape == (3, 3, 8, 25, 2) for v in three)
    assert torch.equal(three[0], two[0]) and torch.equal(three[1], two[1])  # drawn in turn, view by view
    assert augment((normal, reversed_or_not)).names == ('normal', 'reversed_or_not')
    with pytest.raises(ValueError, match="views: one view recipe \\(a function\\) per view, got \\('normal',\\)"):
        augment(('normal',))


# --- SkeletonCLR -------------------------------------------------------------------------------


def momentum_updated(model, modality, m):
    """A copy of ``model``'s key encoder of ``modality`` after one momentum update, written out:
    ``k <- m k + (1 - m) q`` (the ST-GCN methods' query and key start from different draws)."""
    key = copy.deepcopy(model.encoder_k[modality])
    with torch.no_grad():
        for k, q in zip(key.parameters(), model.encoder_q[modality].parameters()):
            k.copy_(m * k + (1 - m) * q)
    return key


def test_skeletonclr_loss_is_moco_infonce_written_out():
    import math

    from models.moco import SkeletonCLR
    torch.manual_seed(0)
    model = with_defaults(SkeletonCLR, lambda: gru(8, 1, dim=16), dim=16, queue_size=8,
                          momentum_key=0.9, contrast_t=0.07).eval().double()
    x_q, x_k = torch.randn(4, 3, 10, 25, 2, dtype=torch.float64), torch.randn(4, 3, 10, 25, 2, dtype=torch.float64)
    queue = model.queue[0].clone()
    with torch.no_grad():
        q = F.normalize(model.encoder_q['joint'](x_q), dim=1)
        k = F.normalize(momentum_updated(model, 'joint', 0.9)(x_k), dim=1)
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
        # the edge frame repeated, as published: numpy's 'symmetric'
        mirrored = np.pad(resized[i], ((0, 0), (pad, pad), (0, 0), (0, 0)), mode='symmetric')
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
    assert list(model.encoders()) == ['joint'] and augment(type(model).VIEWS).names == ('skeletonclr', 'skeletonclr')
    knn, linear = evaluate(data_root, out, tmp_path, '--stream', 'all')  # all: the one stream it has
    assert knn['streams'] == linear['streams'] == ['joint'] and set(knn['accuracy']) == set(linear['accuracy']) == {
        'joint'}
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
    from models.losses import cross_positive_nce
    from models.moco import CrosSCLR
    torch.manual_seed(0)
    model = with_defaults(CrosSCLR, lambda: gru(8, 1, dim=16), dim=16, queue_size=8, topk=2,
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
    model = run_pretrain(data_root, out, '--method', 'crossclr', '--epochs', '2', '--mining-epoch', '1', '--frames',
                         '16', '--knn-every', '0')
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['encoder'], args['shear'], args['mining_epoch']) == ('crossclr', 'stgcn', 0.5, 1)
    assert args['fix_defects'] is False and args['sources']['fix_defects'].startswith('published recipe')
    assert model.encoder_q['motion'].fc[2] is model.encoder_q['joint'].fc  # the published shared heads
    from options.presets import recipe
    published = recipe('ntu60', method='crossclr')[0]  # (the tiny run's --topk is 4)
    assert (published['topk'], published['frames'], published['epochs'], published['queue_size'],
            published['modalities']) == (1, 50, 300, 32768, ['joint', 'motion', 'bone'])
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert 'cross_joint' not in log[0] and {'cross_joint', 'cross_motion', 'cross_bone'} <= set(log[1])
    knn, linear = evaluate(data_root, out, tmp_path, '--stream', 'all')
    assert set(knn['accuracy']) == set(linear['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
    # its published linear protocol, where the command line leaves it open
    settings, sources = linear['settings'], linear['sources']
    assert (settings['lr'], settings['schedule'], settings['whole_clips'], settings['fusion']) == \
        (3.0, [80], True, 'logits-mean')
    assert sources['lr'] == 'crossclr protocol (published, LinguoLi/CrosSCLR@792b70c)'
    assert (settings['epochs'], sources['epochs']) == (1, 'command line')


# --- AimCLR ------------------------------------------------------------------------------------


def test_the_flip_swaps_sides_by_joint_names():
    from feeder.layouts import LAYOUTS, Layout
    published = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22)
    assert LAYOUTS['ntu25'].mirror == published  # AimCLR's NTU permutation, derived from the names
    assert all(layout.mirror[layout.mirror[v]] == v for layout in LAYOUTS.values() for v in range(layout.num_joints))
    names = ['pelvis', 'LShoulder', 'RShoulder', 'l_knee', 'r_knee', 'Left Hand', 'right hand', 'leftover']
    rig = Layout.from_json({'name': 'rig', 'joints': names, 'parents': {n: 'pelvis' for n in names[1:]},
                            'center': 'pelvis', 'up': ['pelvis', 'LShoulder'], 'across': ['LShoulder', 'RShoulder']})
    assert rig.mirror == (0, 2, 1, 4, 3, 6, 5, 7)


def test_the_extreme_augmentations_against_their_definitions():
    import math

    import numpy as np

    from feeder.augment import random_axis_mask, random_axis_rotation, random_blur, random_flip, random_noise
    torch.manual_seed(0)
    x = torch.randn(64, 4, 12, 5, 2, dtype=torch.float64)  # three coordinates and a confidence
    mirror = (0, 2, 1, 4, 3)
    flipped = random_flip(x, mirror)
    swapped = [bool(torch.equal(f, s[:, :, list(mirror)])) for f, s in zip(flipped, x)]
    kept = [bool(torch.equal(f, s)) for f, s in zip(flipped, x)]
    assert all(a != b for a, b in zip(swapped, kept)) and 16 < sum(swapped) < 48

    turned = random_axis_rotation(x, coordinates=3)
    torch.testing.assert_close(turned[:, :3].norm(dim=1), x[:, :3].norm(dim=1))  # a rotation
    assert torch.equal(turned[:, 3], x[:, 3])
    for i in range(8):  # the angle between a point and its image is at most the three angles' sum
        cos = float((turned[i, :3, 0, 0, 0] @ x[i, :3, 0, 0, 0]) / x[i, :3, 0, 0, 0].norm() ** 2)
        assert math.degrees(math.acos(min(1.0, cos))) <= 32 + 1e-6
    planar = torch.randn(16, 2, 3, 5, 1)
    torch.testing.assert_close(random_axis_rotation(planar).norm(dim=1), planar.norm(dim=1))

    noisy = random_noise(x, std=0.01, coordinates=3)
    moved = (noisy - x).abs().amax(dim=(1, 2, 3, 4)) > 0
    assert torch.equal(noisy[:, 3], x[:, 3]) and 16 < int(moved.sum()) < 48
    assert abs(float((noisy - x)[moved][:, :3].std()) - 0.01) < 1e-3

    generator = torch.Generator().manual_seed(3)
    blurred = random_blur(x, coordinates=3, generator=generator)
    generator.manual_seed(3)
    sigma = torch.rand(64, generator=generator).double() * 1.9 + 0.1
    changed = 0
    for i in range(64):
        taps = np.exp(-np.arange(-7, 8) ** 2 / (2 * float(sigma[i]) ** 2))
        taps /= taps.sum()
        padded = np.concatenate([np.repeat(x[i, :3, :1].numpy(), 7, 1), x[i, :3].numpy(),
                                 np.repeat(x[i, :3, -1:].numpy(), 7, 1)], axis=1)
        expected = np.stack([np.tensordot(padded[:, t:t + 15], taps, axes=([1], [0])) for t in range(12)], axis=1)
        if np.allclose(blurred[i, :3].numpy(), expected, atol=1e-12):
            changed += 1
        else:
            assert torch.equal(blurred[i, :3], x[i, :3])
    assert 16 < changed < 48 and torch.equal(blurred[:, 3], x[:, 3])
    still = torch.ones(4, 3, 12, 5, 1)  # a normalised blur leaves a still pose as it is
    torch.testing.assert_close(random_blur(still, p=1.0), still)

    masked = random_axis_mask(x, coordinates=3)
    zeroed = (masked[:, :3] == 0).flatten(2).all(dim=2)
    assert (zeroed.sum(dim=1) <= 1).all() and 16 < int(zeroed.any(dim=1).sum()) < 48
    assert torch.equal(masked[~zeroed.any(dim=1)], x[~zeroed.any(dim=1)]) and torch.equal(masked[:, 3], x[:, 3])


def test_the_attention_drop_is_its_formula_written_out():
    import math

    from models.aimclr import attention_drop
    torch.manual_seed(0)
    f = torch.randn(3, 4, 5, 6, dtype=torch.float64) * torch.rand(3, 4, 1, 6, dtype=torch.float64) * 3
    n, c, t, v = f.shape
    attention = torch.empty_like(f)
    for i in range(n):
        for j in range(c):
            values = f[i, j].flatten().tolist()
            mu = sum(values) / len(values)
            var = sum((x - mu) ** 2 for x in values) / (len(values) - 1)
            for a in range(t):
                for b in range(v):
                    y = (float(f[i, j, a, b]) - mu) ** 2 / (4 * (var + 1e-4)) + 0.5
                    attention[i, j, a, b] = 1 / (1 + math.exp(-y))
    joints = torch.tensor([[float(attention[i, :, :, b].mean() < 0.7) for b in range(v)] for i in range(n)],
                          dtype=torch.float64)
    elements = (attention < 0.7).double()
    assert 0 < joints.sum() < joints.numel() and 0 < elements.sum() < elements.numel()
    expected = f * joints[:, None, None, :] * (joints.numel() / joints.sum()) * elements * (elements.numel() / elements.sum())
    torch.testing.assert_close(attention_drop(f, 0.7), expected)


def test_aimclrs_loss_is_its_formula_written_out():
    import math

    from feeder.layouts import NTU25
    from models.aimclr import AimCLR, attention_drop
    from models.stgcn import STGCNEncoder
    torch.manual_seed(0)
    size, t = 8, 0.07
    model = with_defaults(AimCLR, lambda: STGCNEncoder(NTU25, dim=16), dim=16, queue_size=size, topk=2,
                          mining_epoch=1).eval().double()
    views = tuple(torch.randn(4, 3, 12, 25, 2, dtype=torch.float64) for _ in range(3))
    encoder = model.encoder_q['joint']
    with torch.no_grad():
        q, e = (F.normalize(encoder(v), dim=1) for v in (views[0], views[2]))
        k = F.normalize(momentum_updated(model, 'joint', 0.999)(views[1]), dim=1)
        feature_map, persons = encoder.feature_map(views[2])
        ed = F.normalize(encoder.fc(encoder.pool(attention_drop(feature_map), persons)), dim=1)
    queue = model.queue[0].clone()

    def logits(z, i):
        return [float(z[i] @ k[i]) / t] + [float(z[i] @ queue[:, j]) / t for j in range(size)]

    def log_softmax(row):
        norm = math.log(sum(math.exp(x) for x in row))
        return [x - norm for x in row]

    for epoch in (0, 1):
        expected = 0.0
        for i in range(4):
            lq, le, led = logits(q, i), logits(e, i), logits(ed, i)
            p = [math.exp(x) for x in log_softmax(lq)]
            d3m = sum(-sum(pj * lj for pj, lj in zip(p, log_softmax(other))) for other in (le, led)) / 2
            positives = {0}
            if epoch:  # each query's two nearest queue entries, of the normal, extreme and dropped views
                for row in (lq, le, led):
                    positives |= {1 + j for j in sorted(range(size), key=lambda j: -row[1 + j])[:2]}
            nce = -sum(log_softmax(lq)[j] for j in positives) / len(positives)
            expected += (nce + d3m) / 4
        step = copy.deepcopy(model)  # each epoch's step from the same state
        step.set_epoch(epoch)
        loss, stats = step(views)
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-9)
        assert {'infonce_joint', 'd3m_joint', 'acc_joint'} == set(stats)
    torch.testing.assert_close(step.queue[0, :, :4], k.T)  # only the keys enter the queue


def test_aimclr_needs_an_encoder_that_exposes_its_last_map(data_root, tmp_path):
    with pytest.raises(ValueError, match="aimclr drops features of the encoder's last map, which GRUEncoder does "
                                         "not expose .*; use --encoder stgcn"):
        run_pretrain(data_root, tmp_path / 'gru', '--method', 'aimclr', '--encoder', 'gru', '--epochs', '1')


def test_aimclr_pretrains_with_its_recipe_and_evaluates(data_root, tmp_path):
    out = tmp_path / 'aimclr'
    model = run_pretrain(data_root, out, '--method', 'aimclr', '--epochs', '2', '--mining-epoch', '1',
                         '--frames', '16', '--knn-every', '0')
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['encoder'], args['modalities'], args['shear']) == ('aimclr', 'stgcn', ['joint'], 0.5)
    assert augment(type(model).VIEWS).names == ('skeletonclr', 'skeletonclr', 'extreme') and list(model.encoders()) == ['joint']
    from options.presets import recipe
    published = recipe('ntu60', method='aimclr')[0]
    assert (published['topk'], published['frames'], published['epochs'], published['queue_size']) == (1, 50, 300, 32768)
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert {'infonce_joint', 'd3m_joint'} <= set(log[1]) and all(math.isfinite(log[1][k]) for k in ('loss', 'd3m_joint'))
    knn, linear = evaluate(data_root, out, tmp_path)
    assert 0 <= knn['accuracy']['joint']['top1@k=1'] <= 100 and 0 <= linear['accuracy']['joint']['top1'] <= 100


def test_the_fix_is_one_switch_recorded_and_old_checkpoints_read_as_trained(data_root, tmp_path):
    from options.presets import recipe
    out = tmp_path / 'fixed'
    model = run_pretrain(data_root, out, '--method', 'crossclr', '--epochs', '1', '--frames', '16', '--knn-every', '0',
                         '--fix-defects')
    args = json.loads((out / 'args.json').read_text())
    assert args['fix_defects'] is True and args['sources']['fix_defects'] == 'command line'
    assert model.encoder_q['motion'].fc[0].out_features == model.encoder_q['motion'].fc[2].in_features
    assert all(model.encoder_q['motion'].fc[i] is not model.encoder_q['joint'].fc[i] for i in (0, 2))
    # a checkpoint that predates the switch was trained with the fixes (the code then did what the paper says)
    assert recipe('ntu60', method='crossclr', recorded={'method': 'crossclr'})[0]['fix_defects'] is True
    assert recipe('ntu60', method='crossclr', recorded={'fix_defects': False})[0]['fix_defects'] is False
    knn, _ = evaluate(data_root, out, tmp_path, '--stream', 'motion')
    assert 0 <= knn['accuracy']['motion']['top1@k=1'] <= 100


def test_the_small_data_rules_leave_what_a_method_is_to_its_recipe():
    from options.presets import recipe
    cmd, sources = recipe('ucla', 'stgcn', 'cmd', train_clips=1019, median_length=40)
    for method in ('crossclr', 'aimclr'):  # their top-k counts mined positives, not distilled neighbours
        values, why = recipe('ucla', 'stgcn', method, train_clips=1019, median_length=40)
        assert values['topk'] == 1 and why['topk'] == f'small-data preset ({method})'  # its row, not the rules'
        assert (values['init'], why['init']) == ('pytorch', f'small-data preset ({method})')
        shared = (set(values) & set(cmd)) - {'topk', 'shear', 'modalities'}
        assert {'queue_size', 'momentum_key', 'batch_size', 'epochs', 'lr'} <= shared
        assert {k: values[k] for k in shared} == {k: cmd[k] for k in shared}  # the rest as the rules say
        assert not {'teacher_t', 'cmd_weight'} & set(values) and {'mining_epoch', 'fix_defects'} <= set(values)
    assert cmd['topk'] == cmd['queue_size'] // 2 and sources['topk'].startswith('small-data rule')


@pytest.mark.parametrize('method', sorted(models.METHODS))
def test_a_runs_args_json_alone_rebuilds_its_model(method, data_root, tmp_path):
    import argparse

    from feeder.info import dataset_info
    out = tmp_path / method
    extra = {'mamp': ['--width', '16', '--depth', '1', '--heads', '2', '--decoder-depth', '1', '--frames', '16'],
             'aimclr': ['--frames', '16'], 'crossclr': ['--frames', '16'], 'skeletonclr': ['--frames', '16']}
    trained = run_pretrain(data_root, out, '--method', method, '--epochs', '1', '--knn-every', '0',
                           *extra.get(method, []))
    args = json.loads((out / 'args.json').read_text())
    others = {s.name for cls in models.METHODS.values() if cls is not models.METHODS[method] for s in cls.SETTINGS}
    mine = {s.name for s in models.METHODS[method].SETTINGS}
    assert mine <= set(args) and not (others - mine) & set(args)  # what it reads, and nothing else
    rebuilt = models.build_method(argparse.Namespace(**args), dataset_info('synthetic', str(data_root)))
    rebuilt.load_state_dict(torch.load(out / 'checkpoint.pth', weights_only=True)['model'])  # strict: the same model
    clips = torch.randn(2, 3, args['frames'], 25, 2)
    with torch.no_grad():
        for stream, encoder in trained.eval().encoders().items():
            torch.testing.assert_close(rebuilt.eval().encoders()[stream].features(clips), encoder.features(clips))


def test_a_resumed_run_keeps_where_each_setting_came_from(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--method', 'crossclr', '--epochs', '1', '--knn-every', '0', '--frames', '16')
    first = json.loads((out / 'args.json').read_text())
    run_pretrain(data_root, out, '--method', 'crossclr', '--epochs', '2', '--knn-every', '0', '--frames', '16',
                 '--auto-resume')
    again = json.loads((out / 'args.json').read_text())
    kept = ('lr', 'queue_size', 'topk', 'mining_epoch', 'fix_defects', 'shear', 'offline_step')
    assert {k: again['sources'][k] for k in kept} == {k: first['sources'][k] for k in kept}
    assert (first['mining_epoch'], first['sources']['mining_epoch']) == (0, 'half the epochs (published 150 of 300)')
    assert again['epochs'] == 2 and again['sources']['epochs'] == 'command line'
