"""Parity with the published implementation: one training step from a mid-training state
(values produced by the authors' code at tiny sizes; docs/checkpoints.md, "Golden values")."""
import pytest
import torch

from fast.model import FastCMD
from models.losses import infonce
from tests.golden import GOLDEN, build


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


def test_released_layout_round_trip(golden):
    model = build(golden['config'])
    model.load_released_state_dict(golden['state_dict_before'])
    exported = model.released_state_dict()
    before = golden['state_dict_before']
    assert set(exported) == set(before)
    for key, value in before.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize('grouped', [False, True], ids=['fused', 'grouped'])
def test_one_step_reproduces_the_published_implementation(golden, grouped):
    torch.manual_seed(0)
    config = golden['config']
    def loaded():
        model = build(config, FastCMD, grouped=True) if grouped else build(config)
        model.load_released_state_dict(golden['state_dict_before'])
        return model.train()
    model = loaded()
    optimizer = torch.optim.SGD(model.parameters(), lr=config['lr'], momentum=config['momentum'],
                                weight_decay=config['weight_decay'])
    views = golden['inputs']['view_query'], golden['inputs']['view_key']
    # the logits of the step, from a twin (the step itself moves the queues and statistics)
    twin = loaded()
    q, k = twin.embed(*views)
    total, stats = model(views)
    for i, m in enumerate(('joint', 'motion', 'bone')):
        logits = infonce(q[m], k[m], twin.queue[i], config['T'])[1]
        torch.testing.assert_close(logits, golden['logits'][m], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(stats[f'infonce_{m}'], golden['losses'][f'infonce_{m}'], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats['cmd'], golden['losses']['cmd'], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(total.detach(), golden['total_loss'], atol=1e-5, rtol=1e-5)

    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = model.released_state_dict()
    expected = golden['state_dict_after_one_sgd_step']
    assert set(after) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(after[key].to(value.dtype), value, atol=1e-5, rtol=1e-4, msg=key)

    model.eval()
    with torch.no_grad():
        feature = model.encoder_q['joint'].features(golden['inputs']['view_query'])
    torch.testing.assert_close(feature, golden['joint_feature_eval_mode_view_query'], atol=1e-5, rtol=1e-5)


def test_bfloat16_autocast_stays_close_to_the_published_losses(golden):
    # --amp changes the arithmetic: this bounds by how much on the golden step (CPU autocast).
    model = build(golden['config'])
    model.load_released_state_dict(golden['state_dict_before'])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        total, stats = model.train()((golden['inputs']['view_query'], golden['inputs']['view_key']))
    for key, value in golden['losses'].items():
        torch.testing.assert_close(stats[key].float(), value, rtol=0.03, atol=0)
    torch.testing.assert_close(total.float(), golden['total_loss'], rtol=0.01, atol=0)
