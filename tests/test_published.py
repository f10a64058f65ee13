"""Every method is its published method: golden values computed by the published SkeletonCLR,
CrosSCLR, AimCLR and MAMP code alone (tests/data/*_published_tiny.pt; what each entry is:
docs/checkpoints.md, "Golden values"), reproduced through the project's own modules, the published
state dicts mapped onto our names by each model's ``load_released_state_dict``."""
import argparse
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import finetune
from evaluation.classifier import Classifier
from feeder.augment import (ViewAugment, blur_taps, padded_crop, random_axis_mask, random_axis_rotation, random_blur,
                            random_flip, random_noise, temporal_crop)
from feeder.layouts import NTU25
from models.aimclr import AimCLR, attention_drop, extreme
from models.losses import (cross_positive_nce, distribution_matching, infonce, masked_mse, multi_positive_nce,
                           neighbour_positives)
from models.mamp import MAMP, FinetuneHead, keep_tokens, masking_key, motion_prior, patchify
from models.moco import CrosSCLR, SkeletonCLR
from models.moco import skeletonclr as skeletonclr_view
from models.stgcn import STGCNEncoder
from tests.conftest import transformer, with_defaults
from tests.golden import assert_golden, load_golden
from utils.schedule import learning_rate, make_optimizer

STREAMS = {'joint': 'j', 'motion': 'm', 'bone': 'b'}


@pytest.fixture(scope='module')
def skeletonclr():
    return load_golden('skeletonclr')


@pytest.fixture(scope='module')
def crossclr():
    return load_golden('crossclr')


@pytest.fixture(scope='module')
def aimclr():
    return load_golden('aimclr')


@pytest.fixture(scope='module')
def mamp():
    return load_golden('mamp')


def stgcn(config):
    return STGCNEncoder(NTU25, config['in_channels'], base_channels=config['hidden_channels'],
                        out_channels=config['hidden_dim'], dim=config['feature_dim'], mlp=config['mlp'],
                        dropout=config['dropout'])


def moco(cls, config, state, **options):
    """A model of the golden ``config`` in float64, loaded with the published ``state``, in train mode."""
    model = with_defaults(cls, lambda: stgcn(config), dim=config['feature_dim'], queue_size=config['queue_size'],
                          momentum_key=config['momentum'], contrast_t=config['Temperature'], **options).double()
    model.load_released_state_dict(state)
    return model.train()


def sgd(model, config):
    """The project's optimiser as the published processors build it: SGD over every parameter."""
    args = argparse.Namespace(optimizer='sgd', lr=config['lr'], momentum=config['sgd_momentum'],
                              weight_decay=config['weight_decay'])
    return make_optimizer(model.named_parameters(), args)


def step(model, optimizer, views):
    """One training step as the published processors take it: the loss, the gradients under the
    published names, then the optimiser's step."""
    loss, stats = model(views)
    optimizer.zero_grad()
    loss.backward()
    grads = {model.released_name(n): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    return loss, stats, grads


def assert_state(model, expected, what):
    state = model.released_state_dict()
    for key, value in expected.items():
        assert_golden(state[key], value, f'{what}: {key}')


def fingerprint(state, names, probe):
    """The CrosSCLR file's fingerprint of each trunk tensor: sum, sum of |t|, sum of t^2, and the sum
    of t times the probe."""
    rows = []
    for name in names:
        t = state[name].flatten()
        rows.append(torch.stack([t.sum(), t.abs().sum(), t.pow(2).sum(), (t * probe[:len(t)]).sum()]))
    return torch.stack(rows)


# --- the ST-GCN encoder and SkeletonCLR --------------------------------------------------------


def test_the_stgcn_encoder_is_the_published_model(skeletonclr):
    golden = skeletonclr['encoder_eval']
    encoder = stgcn(skeletonclr['config']).double()
    assert str(encoder.load_released_state_dict(golden['state_dict'])) == '<All keys matched successfully>'
    encoder.eval()
    with torch.no_grad():
        assert_golden(encoder.features(golden['input']), golden['pooled'], 'pooled')
        assert_golden(encoder(golden['input']), golden['output'], 'output')
    assert set(encoder.released_state_dict()) == set(golden['state_dict'])
    published = skeletonclr['published']
    built = STGCNEncoder(NTU25)  # the published recipe's dropout: none in the first block, 0.5 after
    assert [b.tcn[4].p for b in built.blocks] == published['dropout_p_per_block']
    assert [b.tcn[4].inplace for b in built.blocks] == published['dropout_inplace']


def test_skeletonclr_two_steps_equal_the_published_ones(skeletonclr):
    config, train = skeletonclr['config'], skeletonclr['train']
    model = moco(SkeletonCLR, config, train['state_dict_before'])
    optimizer = sgd(model, config)
    for name in ('step1', 'step2'):
        golden = train[name]
        twin = copy.deepcopy(model)  # the logits against the queue as it was before the step
        q, k = twin.embed(golden['im_q'], golden['im_k'])
        assert_golden(infonce(q['joint'], k['joint'], twin.queue[0], config['Temperature'])[1], golden['logits'],
                      f'{name} logits')
        loss, _, grads = step(model, optimizer, (golden['im_q'], golden['im_k']))
        assert_golden(loss, golden['loss'], f'{name} loss')
        assert set(grads) == set(golden['grads'])
        for key, value in golden['grads'].items():
            assert_golden(grads[key], value, f'{name} grad {key}')
        assert set(model.released_state_dict()) == set(golden['state_dict_after'])
        assert_state(model, golden['state_dict_after'], name)


def test_the_temporal_crop_is_the_published_one(skeletonclr):
    golden = skeletonclr['published']['temporal_crop']
    clip, starts = golden['clip'], torch.tensor(golden['starts'])
    batch = clip[None].expand(len(starts), -1, -1, -1, -1)
    assert_golden(temporal_crop(batch, starts, golden['padding_len']), golden['output'], 'crop')
    frames = clip.shape[1]  # SkeletonCLR's crop of a clip of its own length only pads and crops
    assert_golden(padded_crop(batch, torch.full((len(starts),), frames), frames, start=starts), golden['output'], 'crop')
    index = torch.arange(frames, dtype=torch.float64)[None, None, :, None, None].expand(len(starts), 1, -1, 1, 1)
    assert torch.equal(temporal_crop(index, starts, golden['padding_len'])[:, 0, :, 0, 0].long(), golden['source_frame'])


def test_the_published_initialisation():
    torch.manual_seed(0)
    model = with_defaults(SkeletonCLR, lambda: STGCNEncoder(NTU25)).requires_grad_(False)  # the published size
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    biases = torch.cat([m.bias.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    gammas = torch.cat([m.weight.flatten() for m in norms])
    assert abs(float(weights.mean())) < 1e-3 and abs(float(weights.std()) - 0.02) < 2e-4
    assert abs(float(gammas.mean()) - 1) < 2e-3 and abs(float(gammas.std()) - 0.02) < 1e-3
    assert float(biases.abs().max()) == 0 and all(float(m.bias.abs().max()) == 0 for m in norms)
    assert all(torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in norms)
    assert all(torch.equal(e, torch.ones_like(e)) for e in model.encoder_q['joint'].edge_importance)
    query, key = model.encoder_q['joint'].state_dict(), model.encoder_k['joint'].state_dict()
    assert float((query['fc.0.weight'] - key['fc.0.weight']).abs().max()) > 0.01  # drawn after the copy
    torch.testing.assert_close(model.queue.norm(dim=1), torch.ones(1, 32768), atol=1e-6, rtol=0)


# --- CrosSCLR ----------------------------------------------------------------------------------


def test_crossclr_shares_the_published_heads_and_key_updates(crossclr):
    model = moco(CrosSCLR, crossclr['config'], crossclr['state_dict_before'], topk=1, mining_epoch=150)
    for branch, encoders in (('q', model.encoder_q), ('k', model.encoder_k)):
        joint = encoders['joint'].fc
        for m in ('motion', 'bone'):
            head = encoders[m].fc
            published = crossclr['head_structure'][f'encoder_{branch}_{m}']
            assert [p['shared'] for p in published] == [False, False, True, False, True]
            assert head[2] is joint and head[0] is not joint[0]
    for phase, epoch in (('phase1', 0), ('phase2', 150)):
        model.set_epoch(epoch)
        before = {k: v.clone() for k, v in model.released_state_dict().items()}
        model._momentum_update_key_encoder()
        after, m = model.released_state_dict(), crossclr['config']['momentum']
        for name, n in crossclr['key_momentum_updates_per_step'][phase].items():
            query = before['encoder_q' + name[len('encoder_k'):]]
            assert_golden(after[name], m ** n * before[name] + (1 - m ** n) * query, f'{phase} {name} x{n}')


@pytest.mark.parametrize('phase', ['phase1', 'phase2'])
def test_crossclr_steps_equal_the_published_ones(crossclr, phase):
    config, golden = crossclr['config'], crossclr[phase]
    model = moco(CrosSCLR, config, crossclr['state_dict_before'], topk=config['topk'], mining_epoch=config['cross_epoch'])
    model.set_epoch(golden['epoch'] - 1)  # the published epochs count from 1
    views, t = (crossclr['im_q'], crossclr['im_k']), config['Temperature']
    twin = copy.deepcopy(model)
    q, k = twin.embed(*views)
    sims = {m: q[m] @ twin.queue[i] for i, m in enumerate(twin.modalities)}
    for i, m in enumerate(model.modalities):
        logits = infonce(q[m], k[m], twin.queue[i], t)[1]
        if phase == 'phase1':
            assert_golden(logits, golden['logits'][m], f'{m} logits')
            continue
        assert torch.equal(sims[m].topk(1, dim=1).indices, golden['top1_queue_index'][m])
        for v in model.modalities:
            if v != m:
                pair = STREAMS[m] + STREAMS[v]
                size, mined = sims[m].shape[1], golden['top1_queue_index'][v]
                positives = torch.zeros(len(mined), 1 + 2 * size, dtype=torch.float64)
                positives[:, 0] = 1
                positives.scatter_(1, 1 + mined, 1.0).scatter_(1, 1 + size + mined, 1.0)
                assert torch.equal(positives, golden['pos_masks'][pair])  # the key, v's neighbour twice
                context = torch.cat([logits, sims[m] * sims[v] / t], dim=1)
                assert_golden(context, golden['logits'][pair], f'{pair} logits')
                loss = cross_positive_nce(q[m], k[m], sims[m], sims[v], config['topk'], t)
                assert_golden(loss, golden['pair_losses'][pair], f'{pair} loss')
    optimizer = sgd(model, config)
    loss, stats, grads = step(model, optimizer, views)
    assert_golden(loss, golden['total_loss'], 'total loss')
    for m in model.modalities:
        assert_golden(stats[f'cross_{m}' if phase == 'phase2' else f'infonce_{m}'], golden['losses'][m], f'{m} loss')
    assert set(grads) == set(golden['grads'])
    for key, value in golden['grads'].items():
        assert_golden(grads[key], value, f'grad {key}')
    assert_state(model, golden['state_dict_after_heads_buffers'], 'heads and buffers')
    trunk = golden['trunk_params_after_fingerprint']
    expected = trunk['values']
    actual = fingerprint(model.released_state_dict(), trunk['names'], crossclr['fingerprint_probe'])
    scale = torch.stack([expected[:, 1], expected[:, 1], expected[:, 2], expected[:, 1]], dim=1).clamp(min=1)
    assert float(((actual - expected).abs() / scale).max()) <= 1e-10


# --- AimCLR ------------------------------------------------------------------------------------


@pytest.mark.parametrize('case', ['a_all_on', 'b_all_off'])
def test_the_extreme_view_is_the_published_one(aimclr, case):
    golden = aimclr['extreme_augmentation']
    draws, stages = golden[case]['draws'], golden[case]['stages']
    clip = golden['clip'][None]
    on = {name: torch.tensor([draws[f'{name}_u'] < 0.5]) for name in ('flip', 'noise', 'blur', 'mask')}
    s1, s2 = draws['shear_s1'], draws['shear_s2']
    given = dict(start=torch.tensor([draws['crop_start']]),
                 shear=torch.tensor([[[1, s1[0], s2[0]], [s1[1], 1, s2[1]], [s1[2], s2[2], 1]]], dtype=torch.float64),
                 flip=on['flip'],
                 angles=torch.tensor([[math.radians(a) for a in draws['rotate_degrees_xyz']]], dtype=torch.float64),
                 noise=draws['noise'][None] if 'noise' in draws else torch.zeros_like(clip),
                 sigmas=torch.tensor([draws['blur_sigma']], dtype=torch.float64), blur=on['blur'],
                 axis=torch.tensor([draws['mask_axis'] if on['mask'] else -1]))
    frames = clip.shape[2]
    augment = ViewAugment(25, (extreme,), frames=frames, min_crop=frames, shear=golden['shear_amplitude'],
                          corruption=0.0, rotation=0.0, mirror=NTU25.mirror)
    assert NTU25.mirror == tuple(golden['transform_order_ntu'])
    assert_golden(blur_taps(torch.tensor([1.3], dtype=torch.float64), normalise=False)[0], golden['blur_kernel_a'],
                  'blur taps')
    x = skeletonclr_view(augment, clip, torch.tensor([frames]), given)
    assert_golden(x[0], stages['shear'], 'crop then shear')
    for stage, apply in (('random_spatial_flip', lambda x: random_flip(x, NTU25.mirror, flip=given['flip'])),
                         ('random_rotate', lambda x: random_axis_rotation(x, angles=given['angles'])),
                         ('gaus_noise', lambda x: random_noise(x, noise=given['noise'])),
                         ('gaus_filter', lambda x: random_blur(x, normalise=False, sigmas=given['sigmas'],
                                                               blur=given['blur'])),
                         ('axis_mask', lambda x: random_axis_mask(x, axis=given['axis']))):
        x = apply(x)
        if stage in stages:  # the stages that ran (set b: the rotation alone)
            assert_golden(x[0], stages[stage], stage)
    assert_golden(extreme(augment, clip, torch.tensor([frames]), given)[0], golden[case]['output'], 'extreme view')


def test_the_attention_drop_is_the_published_one(aimclr):
    golden = aimclr['eadm']
    x = golden['input'].clone().requires_grad_()
    out = attention_drop(x, golden['keep_prob'], golden['e_lambda'])
    assert_golden(out, golden['output'], 'EADM output')
    out.sum().backward()
    assert_golden(x.grad, golden['grad_input_of_output_sum'], 'EADM gradient')
    elements = golden['element_keep'].view(4, 8, 25, 5).transpose(2, 3)  # rows c * 25 + v, as (N, C, T, V)
    assert torch.equal(x.grad != 0, (golden['joint_keep'][:, None, None, :] * elements) != 0)  # where kept


@pytest.mark.parametrize('phase', ['phase1', 'phase2'])
def test_aimclr_steps_equal_the_published_ones(aimclr, phase):
    config, golden = aimclr['config'], aimclr[phase]
    model = moco(AimCLR, config, aimclr['state_dict_before'], topk=config['topk'], mining_epoch=config['mining_epoch'])
    model.set_epoch(golden['epoch'] - 1)
    views, t = (aimclr['im_q'], aimclr['im_k'], aimclr['im_q_extreme']), config['Temperature']
    twin = copy.deepcopy(model)
    q, k = twin.embed(views[0], views[1])
    e, ed = twin.extreme(twin.encoder_q['joint'], twin.inputs(views[2], 'joint'))
    logits, logits_e, logits_ed = (infonce(z, k['joint'], twin.queue[0], t)[1] for z in (q['joint'], e, ed))
    assert_golden(logits, golden['logits'], 'logits')
    assert_golden(F.softmax(logits, dim=1), golden['target_ddm'], 'D3M target')
    assert_golden(F.softmax(logits_e, dim=1), golden['p_extreme'], 'extreme')
    assert_golden(F.softmax(logits_ed, dim=1), golden['p_extreme_drop'], 'dropped extreme')
    assert_golden(distribution_matching(logits, logits_e, log_softmax=False), golden['loss_d3m_extreme'], 'D3M')
    assert_golden(distribution_matching(logits, logits_ed, log_softmax=False), golden['loss_d3m_extreme_drop'], 'D3M')
    if phase == 'phase2':
        positives = neighbour_positives(config['queue_size'], logits[:, 1:], logits_e[:, 1:], logits_ed[:, 1:], topk=1)
        assert torch.equal(positives, golden['pos_mask'])
        assert_golden(multi_positive_nce(logits, positives), golden['loss_nce'], 'NNM loss')
    optimizer = sgd(model, config)
    loss, stats, grads = step(model, optimizer, views)
    assert_golden(loss, golden['loss'], 'loss')
    assert_golden(stats['infonce_joint'], golden['loss_nce'], 'NCE')
    assert set(grads) == set(golden['grads'])
    for key, value in golden['grads'].items():
        assert_golden(grads[key], value, f'grad {key}')
    assert_state(model, golden['state_dict_after'], 'after the step')


# --- MAMP --------------------------------------------------------------------------------------


def mamp_model(golden, tau=None):
    config = golden['config']

    def make_encoder():
        return transformer(width=config['dim_feat'], depth=config['depth'], heads=config['num_heads'],
                           mlp_ratio=config['mlp_ratio'], patch=config['t_patch_size'], dim=128,
                           joints=config['num_joints'], channels=config['dim_in'])
    model = with_defaults(MAMP, make_encoder, mask_ratio=config['mask_ratio'],
                          mask_tau=config['motion_aware_tau'] if tau is None else tau,
                          decoder_depth=config['decoder_depth']).double()
    model.load_released_state_dict(golden['state_dict'])
    return model


def persons_as_samples(clips):
    n, c, t, v, m = clips.shape
    return clips.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)


def test_mamps_tokens_patches_and_masking_are_the_published_ones(mamp):
    config = mamp['config']
    model = mamp_model(mamp).eval()
    encoder = model.encoder['joint']
    tokens = encoder.tokens(mamp['input'])[0]
    assert_golden(tokens.flatten(1, 2), mamp['tokens'], 'tokens')
    patches = patchify(persons_as_samples(mamp['input']), config['t_patch_size'])
    assert_golden(patches, mamp['patches'], 'patches')
    motion = motion_prior(patches).flatten(1)
    noise = mamp['uniform_noise']
    normalised = motion / (motion.amax(dim=1, keepdim=True) * config['motion_aware_tau'] + 1e-10)
    assert_golden(normalised, mamp['motion_aware_masking']['motion_normalised'], 'motion, normalised')
    assert_golden(normalised.softmax(dim=1), mamp['motion_aware_masking']['motion_prob'], 'masking probabilities')
    for case, tau in (('motion_aware_masking', config['motion_aware_tau']), ('random_masking', 0.0)):
        golden = mamp[case]
        if tau:
            assert_golden(masking_key(motion, tau, noise), golden['sort_key'], 'sort key')
        kept = keep_tokens(motion, config['len_keep'], tau, noise=noise)
        assert torch.equal(kept, golden['ids_keep']), case
        masked = torch.ones_like(noise).scatter_(1, kept, 0.0)
        assert torch.equal(masked, golden['mask'])
        order = keep_tokens(motion, motion.shape[1], tau, noise=noise)  # every token, kept first
        assert torch.equal(order.argsort(dim=1), golden['ids_restore'])
        with torch.no_grad():
            latent = encoder.encode(tokens.flatten(1, 2).gather(1, kept[..., None].expand(-1, -1, config['dim_feat'])))
        assert_golden(latent, golden['latent'], f'{case} latent')
    with torch.no_grad():
        everything = encoder.encode(tokens.flatten(1, 2))
    assert_golden(everything.view(mamp['encoder_all_tokens_eval'].shape), mamp['encoder_all_tokens_eval'], 'all tokens')


def test_a_mamp_step_equals_the_published_one(mamp):
    golden = mamp['pretrain']
    model = mamp_model(mamp).train()
    prediction, target, weight = model.predict('joint', mamp['input'], noise=mamp['uniform_noise'])
    assert_golden(prediction, golden['pred'], 'prediction')
    assert_golden(target, golden['target'], 'target')
    assert torch.equal(weight, golden['mask'])  # absent persons are samples, as published
    loss = masked_mse(prediction, target, weight)
    assert_golden(loss, golden['loss'], 'loss')
    assert_golden(model.stream_loss('joint', mamp['input'], noise=mamp['uniform_noise']), golden['loss'], 'loss')
    loss.backward()
    grads = {model.released_name(n): p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(golden['grads'])
    for key, value in golden['grads'].items():
        value_shape = value.shape
        assert_golden(grads[key][tuple(slice(0, s) for s in value_shape)], value, f'grad {key}')
    assert set(model.released_state_dict()) == set(mamp['state_dict'])


def test_mamps_optimiser_groups_and_schedule_are_the_published_ones(mamp):
    model = mamp_model(mamp)
    groups = mamp['weight_decay_groups']
    args = argparse.Namespace(optimizer='adamw', lr=1e-3, weight_decay=groups['weight_decay'])
    optimizer = make_optimizer(model.named_parameters(), args)
    names = {id(p): model.released_name(n) for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g['weight_decay'] for p in g['params']}
    free = {names[id(p)] for g in optimizer.param_groups if not g['weight_decay'] for p in g['params']}
    assert (decayed, free) == (set(groups['decay']), set(groups['no_decay']))
    assert optimizer.defaults['betas'] == tuple(groups['adamw_betas'])
    schedule = mamp['lr_schedule']
    args = argparse.Namespace(lr=schedule['lr'], min_lr=schedule['min_lr'], warmup_epochs=schedule['warmup_epochs'],
                              epochs=schedule['epochs'], cos=True, schedule=[])
    lrs = torch.tensor([learning_rate(float(e), args) for e in schedule['epoch_float']], dtype=torch.float64)
    assert_golden(lrs, schedule['lr_per_step'], 'lr')
    assert_golden(lrs * 0.8, schedule['lr_per_step_lr_scale_08'], 'scaled lr')


def test_mamps_initialisation_is_the_published_one(mamp):
    torch.manual_seed(0)  # the published size: width 256, 8 heads, 120 frames; one block each
    model = with_defaults(MAMP, lambda: transformer(width=256, depth=1, heads=8, dim=128), decoder_depth=1)
    state = model.released_state_dict()
    for name, stats in mamp['init']['stats_published_size'].items():
        if not isinstance(stats, dict):
            continue
        value = state[name]
        if name.endswith('temp_embed'):
            value = value[:, :stats['shape'][1]]
        assert list(value.shape) == stats['shape'], name
        kind = next((k for k in ('xavier_uniform', 'pytorch_default') if f'{k}_std' in stats), None)
        if kind:  # uniform within the rule's bound, with its spread
            assert float(value.abs().max()) <= stats[f'{kind}_bound'], name
            assert abs(float(value.std()) / stats[f'{kind}_std'] - 1) < 0.05, name
        else:  # the position embeddings and the mask token: N(0, 0.02^2)
            assert abs(float(value.std()) / 0.02 - 1) < 0.1, name
    released = [m for name, m in model.named_modules() if '.fc' not in name]
    assert all(float(m.bias.detach().abs().max()) == 0 for m in released if isinstance(m, torch.nn.Linear))
    norms = [m for m in released if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and float(m.bias.detach().abs().max()) == 0
               for m in norms)


def test_absent_persons_and_the_token_count_under_the_fix(mamp):
    model = mamp_model(mamp)
    model.fix_defects = True
    _, _, weight = model.predict('joint', mamp['input'], noise=mamp['uniform_noise'])
    absent = [n * 2 + 1 for n in mamp['config']['absent_second_person']]
    assert float(weight[absent].sum()) == 0 and float(weight.sum()) == (8 - len(absent)) * 90  # 10 of 100 kept


# --- each method's evaluation protocol ---------------------------------------------------------


def test_mamps_linear_probe_is_the_published_one(mamp):
    golden = mamp['linear_probe']
    encoder = mamp_model(mamp).encoders()['joint']
    classifier = Classifier(encoder, 5, batchnorm=True).double()
    classifier.encoder.eval()
    with torch.no_grad():
        classifier.head.weight.copy_(golden['fc_weight'])
        classifier.head.bias.copy_(golden['fc_bias'])
        assert_golden(classifier.features(mamp['input']), golden['pooled'], 'pooled')
        classifier.norm.train()
        assert_golden(classifier.norm(golden['pooled']), golden['bn_output_train_mode'], 'BatchNorm, train mode')
        classifier.norm.reset_running_stats()
        assert_golden(classifier(mamp['input']), golden['logits_train_mode'], 'logits, train mode')
        assert_golden(classifier.norm.running_mean, golden['running_mean_after'], 'running mean')
        assert_golden(classifier.norm.running_var, golden['running_var_after'], 'running variance')
        classifier.eval()
        assert_golden(classifier.norm(golden['pooled']), golden['bn_output_eval_mode'], 'BatchNorm, eval mode')
        assert_golden(classifier(mamp['input']), golden['logits_eval_mode'], 'logits, eval mode')
    assert (classifier.norm.eps, classifier.norm.affine, classifier.norm.momentum) == \
        (golden['bn_eps'], golden['bn_affine'], golden['bn_momentum'])


def test_mamps_fine_tuning_head_and_layer_decay_are_the_published_ones(mamp):
    golden = mamp['finetune_head']
    encoder = mamp_model(mamp).encoders()['joint']
    classifier = Classifier(encoder, 5, head='mamp').double()
    hidden = golden['hidden_dim_here']
    classifier.head = FinetuneHead(16, 25, 5, hidden=hidden, dropout=golden['dropout_p']).double()
    classifier.head.load_state_dict(golden['state_dict'])
    classifier.eval()
    with torch.no_grad():
        assert_golden(classifier(mamp['input']), golden['output_eval'], 'fine-tuning head')
        assert_golden(classifier.encoder.token_grid(classifier.inputs(mamp['input'])), mamp['encoder_all_tokens_eval'],
                      'token grid')
    assert FinetuneHead(16, 25, 5).fc1.out_features == golden['hidden_dim_published']
    published = MAMP.PROTOCOLS['finetune']
    assert (published['drop_path'], published['label_smoothing'], published['betas']) == \
        (golden['drop_path_rate'], golden['label_smoothing'], [0.9, 0.999])
    depth8 = transformer(width=16, depth=8, heads=2, dim=128)
    depth8.set_drop_path(golden['drop_path_rate'])
    assert_golden(torch.tensor([b.drop_path for b in depth8.blocks], dtype=torch.float64),
                  torch.tensor(golden['drop_path_per_block_published'], dtype=torch.float64), 'drop path per block')

    decay = mamp['layer_decay']
    scales = [decay['layer_decay'] ** (depth8.decay_layers - i) for i in range(depth8.decay_layers + 1)]
    assert_golden(torch.tensor(scales, dtype=torch.float64),
                  torch.tensor(decay['layer_scales_published_depth8'], dtype=torch.float64), 'scales at depth 8')
    scales = finetune.layer_scales(classifier, 'joint', decay['layer_decay'])
    args = argparse.Namespace(optimizer='adamw', lr=1.0, weight_decay=decay['weight_decay'], betas=[0.9, 0.999])
    named = [(f'joint.{n}', p) for n, p in classifier.named_parameters()]
    optimizer = make_optimizer(named, args, scales)
    released = {id(p): ('head.' + n[len('head.'):] if n.startswith('head.') else encoder.encoder.released_name(n[8:]))
                for n, p in classifier.named_parameters()}
    found = {released[id(p)]: (g['lr_scale'], g['weight_decay']) for g in optimizer.param_groups for p in g['params']}
    for name, expected in decay['per_parameter'].items():
        assert found[name][0] == pytest.approx(expected['lr_scale'], rel=1e-12) and found[name][1] == \
            expected['weight_decay'], name


def test_each_method_evaluates_with_its_published_protocol_and_flags_win():
    from evaluation.common import protocol_of
    linear, source = protocol_of('crossclr', 'linear')
    assert (linear['lr'], linear['epochs'], linear['schedule'], linear['batch_size'], linear['weight_decay'],
            linear['whole_clips'], linear['fusion']) == (3.0, 100, [80], 128, 0.0, True, 'logits-mean')
    assert source == 'crossclr protocol (published, LinguoLi/CrosSCLR@792b70c)'
    aimclr, _ = protocol_of('aimclr', 'linear')
    assert (aimclr['fusion'], aimclr['fusion_weights']) == ('logits-weighted', [0.6, 0.4, 0.6])
    probe, _ = protocol_of('mamp', 'linear')
    assert (probe['batchnorm'], probe['lr'], probe['epochs'], probe['batch_size'], probe['cos'], probe['min_lr'],
            probe['rotate_train']) == (True, 0.1, 100, 256, True, 0.0, 0.3)
    assert protocol_of('cmd', 'linear')[0] == {} and protocol_of('mamp', None)[0] == {}


class Fixed(torch.nn.Module):
    """A stand-in classifier: the same logits for any clips."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, clips):
        return self.logits


def test_the_fusions_are_their_formulas():
    from evaluation.classifier import fuse, train_classifiers_one_epoch
    from evaluation.heads import Probabilities
    torch.manual_seed(0)
    a, b, c = (torch.randn(6, 5, dtype=torch.float64) for _ in range(3))
    logits = {'joint': a, 'motion': b, 'bone': c}
    torch.testing.assert_close(fuse(logits), a.softmax(1) + b.softmax(1) + c.softmax(1))
    torch.testing.assert_close(fuse(logits, 'logits-mean'), (a + b + c) / 3)
    torch.testing.assert_close(fuse(logits, 'logits-weighted', [0.6, 0.4, 0.6]), 0.6 * a + 0.4 * b + 0.6 * c)
    probabilities = Probabilities({s: Fixed(v) for s, v in logits.items() if s != 'motion'}, 'logits-weighted',
                                  [0.6, 0.4, 0.6])  # the weights are the modalities': joint and bone keep 0.6
    torch.testing.assert_close(probabilities(None), (0.6 * a + 0.6 * c).softmax(1))
    # --stream all+raw: a raw stream takes its modality's weight
    raw = Probabilities({'joint': Fixed(a), 'raw_joint': Fixed(b), 'raw_motion': Fixed(c)}, 'logits-weighted',
                        [0.6, 0.4, 0.6])
    torch.testing.assert_close(raw(None), (0.6 * a + 0.6 * b + 0.4 * c).softmax(1))
    with pytest.raises(ValueError, match='needs one weight per stream'):
        fuse(logits, 'logits-weighted', [1.0])
    # CrosSCLR's view all: one cross-entropy of the mean logits, with the labels smoothed as asked
    labels = torch.randint(0, 5, (6,))
    streams = {s: Fixed(v.clone()) for s, v in logits.items()}
    optimizer = torch.optim.SGD([p for m in streams.values() for p in m.parameters()], lr=0.0)
    loss = train_classifiers_one_epoch(streams, [(torch.zeros(6), labels)], optimizer, 'cpu', frozen=False, quiet=True,
                                       together=True, smoothing=0.1)
    mean = (a + b + c) / 3
    expected = 0.9 * F.cross_entropy(mean, labels) - 0.1 * mean.log_softmax(1).mean(1).mean()
    assert loss == pytest.approx(float(expected), rel=1e-12)
