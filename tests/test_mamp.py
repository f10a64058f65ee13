"""MAMP and the transformer (docs/method.md, "Methods" and "The transformer encoder"): the masking
against its formula, the target against a direct computation, a loss that ignores the kept tokens,
an encoder that sees the kept tokens alone, the schedule and optimiser MAMP trains with, and a tiny
run from pretraining to evaluation."""
import json
import math

import pytest
import torch

from feeder.augment import random_euler_rotation
from feeder.layouts import NTU25
from models.losses import masked_mse
from models.mamp import MAMP, keep_tokens, motion_prior, motion_target, patchify
from models.transformer import TransformerEncoder
from tests.conftest import gru, run_pretrain, transformer, with_defaults
from tests.test_methods import evaluate


def tiny_mamp(**kwargs):
    torch.manual_seed(0)
    return with_defaults(MAMP, lambda: transformer(width=16, depth=2, heads=2, patch=4, dim=8), **kwargs)


def test_patches_and_their_motion_are_the_formula_written_out():
    x = torch.randn(2, 3, 12, 5)
    patches = patchify(x, 4)
    assert patches.shape == (2, 3, 5, 12)
    for b, t, v in ((0, 0, 0), (1, 2, 4), (0, 1, 3)):
        assert torch.equal(patches[b, t, v], x[b, :, 4 * t:4 * t + 4, v].T.reshape(-1))  # frame after frame
    motion = motion_prior(patches)
    expected = (patches[:, 1:] - patches[:, :-1]).abs().mean(-1)
    assert torch.equal(motion[:, 1:], expected) and torch.equal(motion[:, 0], expected[:, 0])


def test_masking_keeps_the_stillest_tokens_as_tau_goes_to_zero():
    # tokens a thirtieth apart in motion: at tau 0.002 their log-probabilities lie ~17 apart, beyond
    # what the Gumbel noise moves (float64: the softmax of the stillest does not underflow)
    motion = torch.stack([torch.randperm(30, generator=torch.Generator().manual_seed(i)) for i in range(4)]) / 30
    kept = keep_tokens(motion.double(), 6, tau=0.002, generator=torch.Generator().manual_seed(0))
    assert torch.equal(kept.sort(dim=1).values, motion.argsort(dim=1)[:, :6].sort(dim=1).values)


def test_masking_draws_the_masked_tokens_in_proportion_to_the_softmax_of_motion():
    # one token masked of five: by the Gumbel-max trick it is token i with probability pi_i
    tau, draws = 0.5, 40000
    motion = torch.tensor([[0.1, 0.2, 0.4, 0.8, 1.0]]).expand(draws, -1)
    kept = keep_tokens(motion, 4, tau, generator=torch.Generator().manual_seed(1))
    masked = torch.ones(draws, 5).scatter_(1, kept, 0).argmax(dim=1)
    observed = torch.bincount(masked, minlength=5).double() / draws
    pi = torch.softmax(motion[0].double() / (tau * 1.0), dim=0)
    assert torch.allclose(observed, pi, atol=4 * math.sqrt(0.25 / draws)), (observed, pi)
    # tau <= 0: every token equally likely, whatever moves
    kept = keep_tokens(motion, 4, 0.0, generator=torch.Generator().manual_seed(2))
    observed = torch.bincount(torch.ones(draws, 5).scatter_(1, kept, 0).argmax(dim=1), minlength=5).double() / draws
    assert torch.allclose(observed, torch.full((5,), 0.2, dtype=torch.float64), atol=4 * math.sqrt(0.25 / draws))


def test_the_target_is_the_per_frame_motion_normalised_per_token():
    x = torch.randn(2, 3, 8, 4, dtype=torch.float64)
    target = motion_target(x, 4)
    for b, t, v in ((0, 0, 0), (1, 1, 3), (1, 0, 2)):
        values = []
        for frame in range(4 * t, 4 * t + 4):
            values += (x[b, :, frame + 1, v] - x[b, :, frame, v]).tolist() if frame + 1 < 8 else [0.0, 0.0, 0.0]
        values = torch.tensor(values, dtype=torch.float64)
        expected = (values - values.mean()) / math.sqrt(values.var(unbiased=True) + 1e-6)
        assert torch.allclose(target[b, t, v], expected)


def test_the_loss_is_the_masked_tokens_mean_squared_error():
    prediction, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    masked = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1.0]])
    expected = sum(((prediction[b, i] - target[b, i]) ** 2).mean() for b in range(2) for i in range(6)
                   if masked[b, i]) / 6
    assert torch.allclose(masked_mse(prediction, target, masked), expected)
    changed = prediction.clone()
    changed[masked == 0] += 5.0  # a kept token's prediction does not count
    assert torch.allclose(masked_mse(changed, target, masked), expected)


@pytest.mark.parametrize('fix', [False, True], ids=['published', 'fixed'])
def test_the_encoder_sees_only_the_kept_tokens_and_absent_persons_are_samples_as_published(monkeypatch, fix):
    model = tiny_mamp(mask_ratio=0.9, fix_defects=fix)
    lengths, weights = [], []
    for block in model.encoder['joint'].blocks:
        block.register_forward_pre_hook(lambda _, args: lengths.append(args[0].shape[1]))
    monkeypatch.setattr('models.mamp.masked_mse', lambda p, t, m: weights.append(m) or masked_mse(p, t, m))
    clips = torch.randn(3, 3, 16, 25, 2)
    clips[:, :, :, :, 1] = 0  # nobody second
    loss, stats = model((clips,))
    # 16 frames in patches of 4, of 25 joints; int(100 * (1 - 0.9)) = 9 kept as published, 10 fixed
    tokens, keep = 4 * 25, 10 if fix else 9
    assert lengths == [keep, keep] and loss.item() == stats['mse_joint'].item()
    weight = weights[0].view(3, 2, tokens)  # persons are samples of their own, after their clip's
    assert weight[:, 0].sum(dim=1).eq(tokens - keep).all()
    assert weight[:, 1].eq(0).all() if fix else weight[:, 1].sum(dim=1).eq(tokens - keep).all()


def test_mamp_needs_a_transformer():
    with pytest.raises(ValueError, match='--method mamp masks tokens: it needs --encoder transformer, not GRUEncoder'):
        with_defaults(MAMP, lambda: gru(8, 1, dim=8))


def test_the_euler_rotation_turns_each_clip_rigidly_within_its_bounds():
    x = torch.randn(64, 3, 5, 4, 1, dtype=torch.float64)
    turned = random_euler_rotation(x, 0.3, generator=torch.Generator().manual_seed(0))
    # a rotation: each frame's points keep their lengths and their mutual distances
    assert torch.allclose(turned.norm(dim=1), x.norm(dim=1))
    assert torch.allclose((turned[..., 0, 0] - turned[..., 1, 0]).norm(dim=1), (x[..., 0, 0] - x[..., 1, 0]).norm(dim=1))
    # the same turn in every frame: the matrix solved from one frame maps the others
    for n in range(3):
        a = x[n, :, 0, :, 0]
        matrix = turned[n, :, 0, :, 0] @ torch.linalg.pinv(a)
        assert torch.allclose(matrix @ x[n, :, 3, :, 0], turned[n, :, 3, :, 0], atol=1e-8)
        angle = math.acos(max(-1.0, min(1.0, (matrix.trace().item() - 1) / 2)))
        assert math.isclose(torch.linalg.det(matrix).item(), 1.0) and angle <= 3 * 0.3 + 1e-9  # three turns of 0.3
    flat = torch.randn(8, 2, 5, 4, 1, dtype=torch.float64)  # 2D: a turn in the image plane
    assert torch.allclose(random_euler_rotation(flat, 0.3).norm(dim=1), flat.norm(dim=1))


def test_warm_up_then_cosine_to_the_minimum_and_adamw_without_decay_on_1d_parameters():
    from argparse import Namespace

    from utils.schedule import adjust_learning_rate, learning_rate, make_optimizer
    args = Namespace(lr=1e-3, min_lr=5e-4, warmup_epochs=20, cos=True, epochs=400, schedule=[], optimizer='adamw',
                     weight_decay=0.05, momentum=0.9)
    assert learning_rate(0, args) == 0 and math.isclose(learning_rate(10.5, args), 1e-3 * 10.5 / 20)
    for epoch in (20, 133.25, 400):
        expected = 5e-4 + 0.5 * (1e-3 - 5e-4) * (1 + math.cos(math.pi * (epoch - 20) / 380))
        assert math.isclose(learning_rate(epoch, args), expected)
    model = transformer(width=16, depth=1, heads=2, dim=8, mlp=False)
    optimizer = make_optimizer(model.named_parameters(), args, lr_scales={'fc.weight': 0.5})
    decay = {id(p) for g in optimizer.param_groups if g['weight_decay'] == 0.05 for p in g['params']}
    assert all((id(p) in decay) == (p.ndim > 1) for p in model.parameters())
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults['betas'] == (0.9, 0.95)
    adjust_learning_rate(optimizer, 30, args)
    scaled = [g for g in optimizer.param_groups if any(p is model.fc.weight for p in g['params'])]
    assert scaled[0]['lr'] == 0.5 * learning_rate(30, args) and len(scaled[0]['params']) == 1
    step = Namespace(**dict(vars(args), cos=False, warmup_epochs=0, schedule=[3, 5], lr=0.1))  # the published steps
    assert [round(learning_rate(e, step), 6) for e in (0, 2.9, 3, 5)] == [0.1, 0.1, 0.01, 0.001]


def test_mamp_pretrains_with_its_recipe_and_evaluates(data_root, tmp_path):
    out = tmp_path / 'mamp'
    model = run_pretrain(data_root, out, '--method', 'mamp', '--epochs', '2', '--warmup-epochs', '1', '--frames', '16',
                         '--min-crop', '8', '--width', '16', '--depth', '1', '--heads', '2', '--decoder-depth', '1',
                         '--batch-size', '16', '--knn-every', '1')
    args = json.loads((out / 'args.json').read_text())
    assert (args['method'], args['encoder'], args['optimizer'], args['mask_ratio'], args['mask_tau']) == (
        'mamp', 'transformer', 'adamw', 0.9, 0.8)
    assert args['sources']['optimizer'] == 'method recipe (mamp)'
    assert list(model.encoders()) == ['joint'] and [v.__name__ for v in type(model).VIEWS] == ['mamp']
    log = [json.loads(line) for line in (out / 'log.txt').read_text().splitlines()]
    assert 'mse_joint' in log[-1] and 'knn1_joint' in log[-1] and log[0]['lr'] == 0  # warming up from 0
    knn, linear = evaluate(data_root, out, tmp_path, '--stream', 'all')
    assert knn['streams'] == ['joint'] and knn['accuracy']['joint']['top1@k=1'] == log[-1]['knn1_joint']
    assert 0 <= linear['accuracy']['joint']['top1'] <= 100
    import finetune
    import linear_eval
    common = ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
              '--workers', '0', '--device', 'cpu', '--epochs', '1', '--batch-size', '4', '--quiet']
    probe = linear_eval.main(linear_eval.get_linear_parser().parse_args(
        common + ['--batchnorm', '--output-dir', str(tmp_path / 'bn')]))
    assert probe['settings']['batchnorm'] and 0 <= probe['accuracy']['joint']['top1'] <= 100
    from evaluation.heads import load_classifiers, read_heads
    norm = load_classifiers(read_heads(str(tmp_path / 'bn' / 'heads.pth')))[0]['joint'].norm  # predict.py's
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine and norm.num_batches_tracked > 0
    tuned = finetune.main(finetune.get_finetune_parser().parse_args(
        common + ['--optimizer', 'adamw', '--lr', '3e-4', '--warmup-epochs', '1', '--cos', '--weight-decay', '0.05',
                  '--layer-decay', '0.8', '--output-dir', str(tmp_path / 'ft')]))
    assert (tuned['settings']['layer_decay'], tuned['settings']['optimizer']) == (0.8, 'adamw')
    assert 0 <= tuned['accuracy']['top1_mean'] <= 100
    from options.presets import recipe
    published = recipe('ntu120', method='mamp')[0]
    assert (published['frames'], published['lr'], published['mask_tau'], published['decoder_depth'],
            published['weight_decay']) == (120, 1e-3, 0.75, 5, 0.05)


def test_cmd_runs_on_the_transformer(data_root, tmp_path):
    model = run_pretrain(data_root, tmp_path / 'cmd', '--encoder', 'transformer', '--epochs', '1', '--frames', '8',
                         '--width', '16', '--depth', '1', '--heads', '2', '--knn-every', '0')
    assert all(isinstance(s.encoder, TransformerEncoder) for s in model.encoders().values())
    assert list(model.encoders()) == ['joint', 'motion', 'bone']


def test_layer_decay_scales_each_layer_of_the_transformer():
    from evaluation.classifier import Classifier
    from finetune import layer_scales
    from models.encoder import StreamEncoder
    encoder = transformer(width=16, depth=2, heads=2, dim=8)
    scales = layer_scales(Classifier(StreamEncoder(encoder, 'joint', NTU25), 5), 'joint', 0.8)
    assert scales['joint.encoder.embed.weight'] == scales['joint.encoder.temporal'] == pytest.approx(0.8 ** 3)
    assert scales['joint.encoder.blocks.0.attn.qkv.weight'] == pytest.approx(0.8 ** 2)
    assert scales['joint.encoder.blocks.1.mlp.0.bias'] == pytest.approx(0.8)
    assert scales['joint.encoder.norm.weight'] == 1 and 'joint.head.weight' not in scales  # the head: the lr itself
    with pytest.raises(SystemExit, match='the GRUEncoder does not number its layers'):
        layer_scales(Classifier(StreamEncoder(gru(8, 1, dim=8), 'joint', NTU25), 5), 'joint', 0.8)
