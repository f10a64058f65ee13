import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from feeder.layouts import KINECT_V1_20, NTU25
from feeder.modalities import to_modality
from models.cmd import CMD
from models.losses import cmd_loss, infonce, neighbour_kl
from models.stgcn import STGCNEncoder
from tests.conftest import gru, with_defaults
from tests.reference import published_gru_features


def _published_gru(encoder):
    published = nn.GRU(encoder.input_norm.num_features, encoder.hidden_size, encoder.num_layers,
                       batch_first=True, bidirectional=True)
    published.load_state_dict(encoder.released_gru_state())
    return published


@pytest.mark.parametrize('layout, persons, hidden, frames', [(NTU25, 2, 32, 20), (KINECT_V1_20, 1, 16, 7)])
@pytest.mark.parametrize('train', [True, False])
def test_gru_equals_frame_by_frame_formulation(layout, persons, hidden, frames, train):
    torch.manual_seed(0)
    encoder = gru(hidden, 3, inputs=3 * layout.num_joints * persons)
    x = torch.randn(6, 3, frames, layout.num_joints, persons)
    oracle_norm = copy.deepcopy(encoder.input_norm)
    encoder.train(train), oracle_norm.train(train)
    with torch.no_grad():
        ours = encoder.features(x)
        theirs = published_gru_features(_published_gru(encoder), oracle_norm, x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gru_recurrent_blocks_stay_block_diagonal_in_training():
    torch.manual_seed(0)
    encoder = gru(8, 3, dim=16)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        encoder(torch.randn(4, 3, 10, 25, 2)).pow(2).sum().backward()
        optimizer.step()
    for layer in range(3):
        weight = getattr(encoder.gru, f'weight_hh_l{layer}')
        assert (weight[~encoder.hh_mask] == 0).all()
        assert (weight[encoder.hh_mask] != 0).all()
    # and the trained weights still compute the published function
    x = torch.randn(3, 3, 9, 25, 2)
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.features(x),
                                   published_gru_features(_published_gru(encoder), encoder.input_norm, x))


def test_gru_initialisation_follows_the_published_code():
    encoder = gru(64, 3, dim=128, mlp=True)
    state = encoder.released_gru_state()
    bound = (6 / (150 + 3 * 64)) ** 0.5  # Xavier-uniform on each chain's (3H, in) matrix
    assert state['weight_ih_l0'].abs().max() <= bound and state['weight_ih_l0'].abs().max() > 0.9 * bound
    assert state['bias_hh_l2'].abs().max() <= 64 ** -0.5  # PyTorch's default
    xavier_fc = (6 / (128 + 128)) ** 0.5
    assert encoder.fc[2].weight.abs().max() <= xavier_fc < encoder.fc[2].weight.abs().max() * 1.2


def test_bidirectional_mode_joins_last_forward_and_first_backward_state():
    torch.manual_seed(0)
    encoder = gru(8, 2, dim=16, mode='bidirectional').eval()
    x = torch.randn(3, 3, 12, 25, 2)
    seq = encoder.input_norm(x.permute(0, 2, 3, 1, 4).reshape(3, 12, 150).transpose(1, 2)).transpose(1, 2)
    _, h = encoder.gru(seq)  # h: (layers * 2, N, H): the final states of both directions
    torch.testing.assert_close(encoder.features(x), torch.cat([h[-2], h[-1]], dim=1))


def test_mean_pool_is_the_mean_of_every_prefix_clips_last_output():
    # A forward-in-time chain's output at frame t is the last output of the clip cut after t
    # (in eval mode, where BatchNorm does not look across frames).
    torch.manual_seed(0)
    mean = gru(8, 2, dim=16, pool='mean').eval()
    last = gru(8, 2, dim=16).eval()
    last.load_state_dict(mean.state_dict())
    x = torch.randn(3, 3, 7, 25, 2)
    prefixes = torch.stack([last.features(x[:, :, :t + 1]) for t in range(7)])
    torch.testing.assert_close(mean.features(x), prefixes.mean(0))
    with pytest.raises(ValueError, match="'last' or 'mean'"):
        gru(8, 2, pool='max')


@pytest.mark.parametrize('layout, persons', [(NTU25, 2), (KINECT_V1_20, 1)])
def test_stgcn_shapes_and_person_order(layout, persons):
    torch.manual_seed(0)
    encoder = STGCNEncoder(layout, dim=32).eval()
    x = torch.randn(2, 3, 24, layout.num_joints, persons)
    assert encoder(x).shape == (2, 32) and encoder.features(x).shape == (2, 256)
    # the feature is a mean over persons, so their order does not matter
    torch.testing.assert_close(encoder.features(x), encoder.features(x.flip(-1)), atol=1e-5, rtol=1e-5)
    assert encoder.A.shape == (3, layout.num_joints, layout.num_joints)


def test_modalities():
    x = torch.randn(2, 3, 5, 25, 2)
    motion = to_modality(x, 'motion', NTU25)
    torch.testing.assert_close(motion[:, :, :4], x[:, :, 1:] - x[:, :, :-1])
    assert (motion[:, :, 4] == 0).all()
    bone = to_modality(x, 'bone', NTU25)
    for v1, v2 in NTU25.bone_pairs:
        torch.testing.assert_close(bone[..., v1, :], x[..., v1, :] - x[..., v2, :])
    assert (bone[..., 20, :] == 0).all()
    with pytest.raises(ValueError, match='unknown modality'):
        to_modality(x, 'velocity', NTU25)


def test_infonce_against_direct_formula():
    torch.manual_seed(0)
    q, k = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 8), dim=1)
    queue = F.normalize(torch.randn(8, 11), dim=0)
    loss, logits, sim = infonce(q, k, queue, 0.07)
    expected = 0
    for i in range(5):
        pos = torch.exp(q[i] @ k[i] / 0.07)
        neg = sum(torch.exp(q[i] @ queue[:, j] / 0.07) for j in range(11))
        expected += -torch.log(pos / (pos + neg)) / 5
    torch.testing.assert_close(loss, expected)
    assert logits.shape == (5, 12) and torch.allclose(sim, q @ queue)


def _direct_kl(student_row, teacher_row, topk, teacher_t, student_t):
    order = sorted(range(len(teacher_row)), key=lambda j: -float(teacher_row[j]))[:topk]
    t = torch.stack([teacher_row[j] for j in order]) / teacher_t
    s = torch.stack([student_row[j] for j in order]) / student_t
    p = torch.exp(t) / torch.exp(t).sum()
    log_s = s - torch.log(torch.exp(s).sum())
    return (p * (torch.log(p) - log_s)).sum()


def test_cmd_loss_against_direct_formula():
    torch.manual_seed(0)
    mods = ('joint', 'motion', 'bone')
    student = {m: torch.randn(4, 20) for m in mods}
    teacher = {m: torch.randn(4, 20) for m in mods}
    got = cmd_loss(student, teacher, topk=6, teacher_t=0.05, student_t=0.1)
    expected = 0
    for a in mods:
        for b in mods:
            if a != b:
                expected += sum(_direct_kl(student[b][i], teacher[a][i], 6, 0.05, 0.1) for i in range(4)) / 4
    torch.testing.assert_close(got, expected)


def test_student_is_compared_on_the_teachers_neighbours():
    # The student agrees with the teacher on the teacher's top-2 and disagrees everywhere else:
    # the loss only looks at the top-2, so it is the KL of two equal-shaped distributions.
    teacher = torch.tensor([[5.0, 4.0, 0.0, -1.0]])
    student = torch.tensor([[2.5, 2.0, 100.0, 100.0]])
    values, index = teacher.topk(2, dim=1)
    assert index.tolist() == [[0, 1]]
    loss = neighbour_kl(student, values, index, teacher_t=0.5, student_t=0.25)
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)


def _tiny_cmd(modalities=('joint', 'motion', 'bone'), cmd_weight=1.0, queue=16):
    torch.manual_seed(0)
    return with_defaults(CMD, lambda: gru(8, 2, dim=16), modalities=modalities, dim=16, queue_size=queue,
                         momentum_key=0.9, topk=8, cmd_weight=cmd_weight)


def test_step_gradients_momentum_and_queue():
    model = _tiny_cmd().train()
    x_q, x_k = torch.randn(4, 3, 10, 25, 2), torch.randn(4, 3, 10, 25, 2)
    q_before = {k: v.clone() for k, v in model.encoder_q.state_dict().items()}
    k_before = {k: v.clone() for k, v in model.encoder_k.state_dict().items()}
    ptr = int(model.queue_ptr)
    total, stats = model((x_q, x_k))
    total.backward()
    assert all(p.grad is not None for p in model.encoder_q.parameters())
    assert all(p.grad is None for p in model.encoder_k.parameters())
    for name, param in model.encoder_k.named_parameters():
        torch.testing.assert_close(param, 0.9 * k_before[name] + 0.1 * q_before[name])
    assert int(model.queue_ptr) == (ptr + 4) % 16
    # the enqueued keys are the key encoders' normalised outputs for the key view
    with torch.no_grad():
        for i, m in enumerate(model.modalities):
            keys = F.normalize(model.encoder_k[m](to_modality(x_k, m, NTU25)), dim=1)
            torch.testing.assert_close(model.queue[i, :, ptr:ptr + 4], keys.T)
    assert set(stats) >= {'infonce_joint', 'infonce_motion', 'infonce_bone', 'cmd', 'acc_joint'}
    torch.testing.assert_close(total.detach(), stats['infonce_joint'] + stats['infonce_motion']
                               + stats['infonce_bone'] + stats['cmd'])


def test_queue_pointer_wraps_and_fills_every_slot():
    model = _tiny_cmd(queue=8).train()
    for step in range(3):
        model((torch.randn(4, 3, 6, 25, 2), torch.randn(4, 3, 6, 25, 2)))
        assert int(model.queue_ptr) == (4 * (step + 1)) % 8


def test_single_modality_is_moco_and_weight_zero_turns_cmd_off():
    moco = _tiny_cmd(modalities=('joint',))
    total, stats = moco((torch.randn(4, 3, 6, 25, 2), torch.randn(4, 3, 6, 25, 2)))
    assert 'cmd' not in stats and moco.queue.shape == (1, 16, 16)
    torch.testing.assert_close(total.detach(), stats['infonce_joint'])
    _, stats = _tiny_cmd(cmd_weight=0)((torch.randn(4, 3, 6, 25, 2), torch.randn(4, 3, 6, 25, 2)))
    assert 'cmd' not in stats


def test_topk_above_queue_is_an_error():
    with pytest.raises(ValueError, match='top-k'):
        with_defaults(CMD, lambda: gru(8, 1, dim=16), dim=16, queue_size=8, topk=9)


def test_every_recipe_key_has_a_flag_and_every_encoder_setting_a_default():
    import pretrain
    from models import ENCODERS, EncoderConfig, build_encoder, encoder_setting_names
    from models.encoder import Encoder
    from models import METHODS
    from options.presets import DATASET_RECIPES, PRETRAIN, SMALL, recipe
    parser = pretrain.get_pretrain_parser()
    flags = {a.dest: a for a in parser._actions}
    tables = [PRETRAIN, SMALL, *DATASET_RECIPES.values()]
    tables += [t for cls in ENCODERS.values() for t in (cls.RECIPE, cls.SMALL_RECIPE)]
    tables += [t for cls in METHODS.values() for t in (cls.RECIPE, cls.SMALL_RECIPE or {}, *cls.DATASET_RECIPES.values())]
    for table in tables:
        assert set(table) <= set(flags), set(table) - set(flags)
    assert set(METHODS) == set(flags['method'].choices) and set(ENCODERS) == set(flags['encoder'].choices)
    assert all(cls.ENCODER in (None, *ENCODERS) for cls in METHODS.values())
    assert all(key in flags for key in encoder_setting_names())  # every setting has a flag, made from its encoder
    for name, cls in ENCODERS.items():  # each its defaults, and nothing of another encoder's
        values = recipe('ntu60', name)[0]
        assert all(values.get(s.name) is not None for s in cls.SETTINGS)
        assert not {s.name for other in ENCODERS.values() if other is not cls for s in other.SETTINGS} - \
            {s.name for s in cls.SETTINGS} & set(values)
    published = recipe('ntu60', 'gru')[0]
    for name, cls in ENCODERS.items():
        assert issubclass(cls, Encoder)
        encoder = build_encoder(EncoderConfig.from_dict(dict(recipe('ntu60', name)[0], hidden_size=8)),
                                NTU25, 2).eval()
        x = torch.randn(2, 3, 12, 25, 2)
        assert encoder.features(x).shape == (2, encoder.feature_dim) and encoder(x).shape == (2, 128)
    with pytest.raises(ValueError, match='encoder gru: no value for num_layers'):
        EncoderConfig.from_dict(dict(published, num_layers=None))
    with pytest.raises(ValueError, match="unknown encoder 'lstm'; known: gru, stgcn"):
        EncoderConfig.from_dict(dict(published, encoder='lstm'))


def test_a_new_encoder_is_one_class_and_its_registration(data_root, tmp_path, monkeypatch):
    import knn_eval
    import models
    from models.encoder import Encoder, Setting, projection_head
    from tests.conftest import run_pretrain

    class Toy(Encoder):
        """The mean pose over time and persons, through one linear layer."""
        SETTINGS = (Setting('toy_width', int, 32, "the toy's feature size"),)

        @classmethod
        def build(cls, settings, layout, persons, channels, dim, mlp):
            return cls(channels * layout.num_joints, settings['toy_width'], dim, mlp)

        def __init__(self, inputs, width, dim, mlp):
            super().__init__()
            self.feature_dim = width
            self.body = torch.nn.Linear(inputs, self.feature_dim)
            self.fc = projection_head(self.feature_dim, dim, mlp)

        def features(self, x):
            return self.body(x.mean(dim=(2, 4)).flatten(1))

    monkeypatch.setitem(models.ENCODERS, 'toy', Toy)  # its one row: its flag and default follow
    model = run_pretrain(data_root, tmp_path / 'toy', '--epochs', '1', '--encoder', 'toy', '--toy-width', '24')
    assert isinstance(model.encoder_q['joint'], Toy) and model.encoder_q['joint'].feature_dim == 24
    args = knn_eval.get_knn_parser().parse_args(
        ['--checkpoint', str(tmp_path / 'toy' / 'checkpoint.pth'), '--dataset', 'synthetic', '--data-root',
         str(data_root), '--stream', 'all', '--output-dir', str(tmp_path / 'knn'), '--workers', '0', '--device', 'cpu'])
    results = knn_eval.main(args)  # evaluation rebuilds the toy encoder from the checkpoint's args
    assert results['encoder_kind'] == 'ours' and set(results['accuracy']) == {'joint', 'motion', 'bone', 'fused'}
