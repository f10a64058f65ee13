"""The grouped recurrence (all modalities' GRU chains advanced together, hand-written backward)
computes the published encoder's function."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from feeder.layouts import NTU25
from models.cmd import CMD
from models.gru import GRUEncoder, grouped_features
from models.recurrence import gru_recurrence, triton
from tests.reference import published_gru_features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def encoders(count, hidden=12, layers=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    out = [GRUEncoder(150, hidden, layers, dim=8).to(dtype).train() for _ in range(count)]
    for encoder in out:  # larger, non-zero biases, so every term of the gate equations matters
        with torch.no_grad():
            for name, param in encoder.gru.named_parameters():
                if name.startswith('bias'):
                    param.normal_(0, 0.3)
    return out


@pytest.mark.parametrize('count, layers', [(1, 1), (3, 3)])
def test_grouped_features_equal_the_frame_by_frame_oracle(count, layers):
    group = encoders(count, layers=layers)
    inputs = [torch.randn(5, 3, 9, 25, 2, dtype=torch.float64) for _ in group]
    got = grouped_features(group, inputs, kernels='torch')
    for encoder, x, feature in zip(group, inputs, got):
        gru = torch.nn.GRU(150, encoder.hidden_size, layers, batch_first=True, bidirectional=True).double()
        gru.load_state_dict(encoder.published_gru_state())
        torch.testing.assert_close(feature, published_gru_features(gru, encoder.input_norm, x), rtol=1e-10, atol=1e-10)


def test_grouped_gradients_equal_the_fused_encoder():
    fused, grouped = encoders(3), encoders(3)
    inputs = [torch.randn(4, 3, 7, 25, 2, dtype=torch.float64) for _ in fused]
    weights = [torch.randn(4, 24, dtype=torch.float64) for _ in fused]
    sum((e.features(x) * w).sum() for e, x, w in zip(fused, inputs, weights)).backward()
    sum((f * w).sum() for f, w in zip(grouped_features(grouped, inputs, 'torch'), weights)).backward()
    for a, b in zip(fused, grouped):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            if not name.startswith('fc'):
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)
        # the off-diagonal blocks receive exactly zero gradient
        assert not (b.gru.weight_hh_l1.grad * ~b.hh_mask).any()


def test_recurrence_backward_passes_gradcheck():
    torch.manual_seed(0)
    gi = torch.randn(3, 5, 2, 12, dtype=torch.float64, requires_grad=True)  # (G, T, N, 3H)
    w = (0.5 * torch.randn(3, 4, 12, dtype=torch.float64)).requires_grad_()
    b = torch.randn(3, 1, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: gru_recurrence(*a, kernels='torch'), (gi, w, b))


def test_grouped_cmd_step_equals_the_fused_step():
    def step(grouped):
        torch.manual_seed(0)
        model = CMD(lambda: GRUEncoder(150, 8, 2, 16), NTU25, dim=16, queue_size=16, topk=8, grouped=grouped).double()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        for _ in range(2):
            views = [torch.randn(4, 3, 6, 25, 2, dtype=torch.float64, generator=gen) for _ in range(2)]
            loss, _ = model(*views)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.state_dict()
    fused, grouped = step(False), step(True)
    for key, value in fused.items():
        torch.testing.assert_close(grouped[key], value, rtol=1e-9, atol=1e-12, msg=key)


def test_grouped_needs_published_encoders_of_one_shape():
    with pytest.raises(ValueError, match='published-mode GRU encoders of one shape'):
        grouped_features([GRUEncoder(150, 8, 2, 16, mode='bidirectional')], [torch.randn(2, 3, 4, 25, 2)])
    with pytest.raises(ValueError, match="kernels must be one of 'auto', 'torch', 'triton'"):
        gru_recurrence(torch.randn(2, 1, 1, 6), torch.randn(1, 2, 6), torch.randn(1, 1, 6), kernels='cuda')


@pytest.mark.skipif(triton is None or torch.cuda.is_available(),
                    reason='needs Triton; with a GPU, tests/test_cuda.py checks the compiled kernels instead')
def test_triton_gate_kernels_equal_the_tensor_operations():
    # Triton's interpreter runs the CUDA kernels' code on the CPU
    code = textwrap.dedent('''
        import torch
        from models.recurrence import gru_recurrence
        torch.manual_seed(0)
        w = (0.3 * torch.randn(3, 40, 120)).requires_grad_()
        b = torch.randn(3, 1, 120, requires_grad=True)
        dout = torch.randn(3, 6, 4, 40)
        # (G, T, N, 3H) as the encoder passes it, and with other strides
        for gi in (torch.randn(3, 6, 4, 120), torch.randn(3, 4, 6, 120).transpose(1, 2)):
            gi.requires_grad_()
            grads = {}
            for kernels in ('torch', 'triton'):
                out = gru_recurrence(gi, w, b, kernels)
                grads[kernels] = [out, *torch.autograd.grad((out * dout).sum(), (gi, w, b))]
                with torch.no_grad():
                    torch.testing.assert_close(gru_recurrence(gi, w, b, kernels), out, rtol=0, atol=0)
            for expected, got in zip(grads['torch'], grads['triton']):
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        print('ok')
    ''')
    env = {**os.environ, 'TRITON_INTERPRET': '1', 'PYTHONPATH': ROOT}
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]
