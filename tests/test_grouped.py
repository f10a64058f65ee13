"""The grouped recurrence (all modalities' GRU chains advanced together, hand-written backward)
computes the published encoder's function."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fast.grouped import grouped_features
from fast.model import FastCMD
from fast.recurrence import gru_recurrence, triton
from tests.conftest import gru, with_defaults
from tests.reference import published_gru_features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def encoders(count, hidden=12, layers=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    out = [gru(hidden, layers, dim=8).to(dtype).train() for _ in range(count)]
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
        published = torch.nn.GRU(150, encoder.hidden_size, layers, batch_first=True, bidirectional=True).double()
        published.load_state_dict(encoder.released_gru_state())
        torch.testing.assert_close(feature, published_gru_features(published, encoder.input_norm, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('pool', ['last', 'mean'])
def test_grouped_gradients_equal_the_fused_encoder(pool):
    fused, grouped = encoders(3), encoders(3)
    for encoder in fused + grouped:
        encoder.pool = pool
    inputs = [torch.randn(4, 3, 7, 25, 2, dtype=torch.float64) for _ in fused]
    weights = [torch.randn(4, 24, dtype=torch.float64) for _ in fused]
    sum((e.features(x) * w).sum() for e, x, w in zip(fused, inputs, weights)).backward()
    got = grouped_features(grouped, inputs, 'torch')
    for encoder, x, feature in zip(fused, inputs, got):
        torch.testing.assert_close(feature, encoder.features(x), rtol=1e-10, atol=1e-12)
    sum((f * w).sum() for f, w in zip(got, weights)).backward()
    for a, b in zip(fused, grouped):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            if not name.startswith('fc'):
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)
        # the off-diagonal blocks receive exactly zero gradient
        assert not (b.gru.weight_hh_l1.grad * ~b.hh_mask).any()


def test_recurrence_backward_passes_gradcheck():
    torch.manual_seed(0)
    gi = torch.randn(3, 5, 2, 12, dtype=torch.float64, requires_grad=True)  # (G, T, N, 3H)
    w = (0.5 * torch.randn(3, 12, 4, dtype=torch.float64)).requires_grad_()
    b = torch.randn(3, 1, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: gru_recurrence(*a, kernels='torch'), (gi, w, b))


def test_recurrence_takes_the_fused_layout_and_the_input_bias():
    # (E, C, T, N, 3, H) strided projections without their bias: the same outputs and gradients
    # as the chain-major (G, T, N, 3H) projections with the bias added
    torch.manual_seed(0)
    groups, chains, frames, batch, size = 2, 2, 5, 3, 4
    buf = torch.randn(groups, frames, batch, 3, chains, size, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(groups * chains, 3 * size, size, dtype=torch.float64)).requires_grad_()
    b_ih, b_hh = (torch.randn(groups * chains, 1, 3 * size, dtype=torch.float64, requires_grad=True) for _ in 'ih')
    dout = torch.randn(groups * chains, frames, batch, size, dtype=torch.float64)
    fused = lambda buf, w, b_ih, b_hh: gru_recurrence(buf.permute(0, 4, 1, 2, 3, 5), w, b_hh, 'torch', b_ih=b_ih)
    plain = lambda buf, w, b_ih, b_hh: gru_recurrence(
        buf.permute(0, 4, 1, 2, 3, 5).reshape(groups * chains, frames, batch, 3 * size) + b_ih.unsqueeze(1), w, b_hh,
        'torch')
    args = (buf, w, b_ih, b_hh)
    outs = [f(*args) for f in (fused, plain)]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    got, expected = (torch.autograd.grad((out * dout).sum(), args) for out in outs)
    for name, g, e in zip(('gi', 'w_hh', 'b_ih', 'b_hh'), got, expected):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.autograd.gradcheck(fused, args)
    with pytest.raises(ValueError, match=r'gi must be \(G, T, N, 3H\) or \(E, C, T, N, 3, H\), got shape \(2, 3, 12\)'):
        gru_recurrence(torch.randn(2, 3, 12), w, b_hh)


def test_fp16_input_projections_are_as_accurate_as_tf32():
    # the layer's input products with float16 operands err no more than TF32 rounding of the same
    # operands; the backward is the float32 one
    from fast.grouped import _InputProjection
    torch.manual_seed(0)
    features, hidden = 512, 64
    bound = (6 / (features + 6 * hidden)) ** 0.5
    weights = [torch.empty(6 * hidden, features, dtype=torch.float64).uniform_(-bound, bound).requires_grad_()
               for _ in range(3)]
    x = torch.rand(3, 40, features, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    exact = torch.stack([x[e] @ w.T for e, w in enumerate(weights)])
    tf32 = torch.stack([_round_fraction(x[e]).double() @ _round_fraction(w).double().T for e, w in enumerate(weights)])
    got = _InputProjection.apply(x.float(), True, None, *(w.float() for w in weights)).double()
    err = {name: ((out - exact).norm() / exact.norm()).item() for name, out in (('tf32', tf32), ('fp16', got))}
    assert 1e-5 < err['tf32'] < 1e-3 and err['fp16'] < 1.2 * err['tf32'], err
    dgi = torch.randn_like(exact)
    expected = torch.autograd.grad((exact * dgi).sum(), (x, *weights))
    got = torch.autograd.grad((_InputProjection.apply(x, True, None, *weights) * dgi).sum(), (x, *weights))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_grouped_products_follow_autocast():
    # under autocast the layers compute in its type, as nn.GRU's products would, and the
    # parameters' gradients come back in float32
    group, x = encoders(2, layers=2, dtype=torch.float32), [torch.randn(3, 3, 5, 25, 2) for _ in range(2)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = grouped_features(group, x, 'torch')
    assert all(f.dtype == torch.bfloat16 for f in got)
    expected = grouped_features(group, x, 'torch')
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.float(), e, rtol=0.05, atol=0.05)
    sum(f.float().sum() for f in got).backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for e in group for p in e.gru.parameters())


def test_grouped_cmd_step_equals_the_fused_step():
    def step(grouped):
        torch.manual_seed(0)
        model = with_defaults(FastCMD, lambda: gru(8, 2, dim=16), dim=16, queue_size=16, topk=8,
                              grouped=grouped).double()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
        gen = torch.Generator().manual_seed(1)
        for _ in range(2):
            views = [torch.randn(4, 3, 6, 25, 2, dtype=torch.float64, generator=gen) for _ in range(2)]
            loss, _ = model(views)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.state_dict()
    fused, grouped = step(False), step(True)
    for key, value in fused.items():
        torch.testing.assert_close(grouped[key], value, rtol=1e-9, atol=1e-12, msg=key)


def test_grouped_needs_published_encoders_of_one_shape():
    with pytest.raises(ValueError, match='published-mode GRU encoders of one shape'):
        grouped_features([gru(8, 2, dim=16, mode='bidirectional')], [torch.randn(2, 3, 4, 25, 2)])
    with pytest.raises(ValueError, match="kernels must be one of 'auto', 'torch', 'triton', 'triton-frame'"):
        gru_recurrence(torch.randn(2, 1, 1, 6), torch.randn(1, 6, 2), torch.randn(1, 1, 6), kernels='cuda')
    with pytest.raises(ValueError, match='recurrent_fp16 rounds float32 operands; the inputs are torch.bfloat16'):
        gru_recurrence(torch.randn(2, 1, 1, 6, dtype=torch.bfloat16), torch.randn(2, 6, 2), torch.randn(2, 1, 6),
                       recurrent_fp16=True)


def _round_fraction(x, bits=10):
    """float32 ``x`` rounded to ``bits`` fraction bits, exponent range kept (TF32 for 10)."""
    i = x.float().view(torch.int32)
    drop = 23 - bits
    i = (i + (1 << (drop - 1))) & ~((1 << drop) - 1)  # round half away from zero on the magnitude
    return i.view(torch.float32).to(x.dtype)


def _gru_chains(gi, w, b, operand):
    """Frame-by-frame GRU chains whose product operands pass through ``operand`` (an oracle
    written from the equations, independent of fast.recurrence)."""
    h, size, outs = gi.new_zeros(gi.shape[0], gi.shape[2], w.shape[2]), w.shape[2], []
    for t in range(gi.shape[1]):
        gh = operand(h) @ operand(w).transpose(1, 2) + b
        r = torch.sigmoid(gi[:, t, :, :size] + gh[..., :size])
        z = torch.sigmoid(gi[:, t, :, size:2 * size] + gh[..., size:2 * size])
        n = torch.tanh(gi[:, t, :, 2 * size:] + r * gh[..., 2 * size:])
        h = (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, 1)


def test_recurrent_fp16_are_as_accurate_as_tf32_operands():
    # published-size weights (Xavier-uniform of a (3H, H) matrix) and states; float16 keeps TF32's
    # 10-bit fraction, so against float64 it must err no more than TF32 rounding of the same operands
    torch.manual_seed(0)
    size = 256
    bound = (6 / (4 * size)) ** 0.5
    w = torch.empty(4, 3 * size, size, dtype=torch.float64).uniform_(-bound, bound)
    b = 0.1 * torch.randn(4, 1, 3 * size, dtype=torch.float64)
    gi = torch.randn(4, 16, 8, 3 * size, dtype=torch.float64)
    exact = _gru_chains(gi, w, b, lambda x: x)
    tf32 = _gru_chains(gi, w, b, lambda x: _round_fraction(x.float()).double())
    fp16 = _gru_chains(gi, w, b, lambda x: x.half().double())
    got = gru_recurrence(gi.float(), w.float(), b.float(), 'torch', recurrent_fp16=True).double()
    err = {name: ((out - exact).norm() / exact.norm()).item() for name, out in
           (('tf32', tf32), ('fp16', fp16), ('implementation', got))}
    assert 1e-5 < err['tf32'] < 1e-3, err  # the emulation does round
    assert err['fp16'] < 1.2 * err['tf32'], err
    assert err['implementation'] < 1.2 * err['tf32'], err
    # and the rounding does happen in the implementation
    plain = gru_recurrence(gi.float(), w.float(), b.float(), 'torch').double()
    assert ((plain - exact).norm() / exact.norm()).item() < 0.1 * err['fp16'], err


def test_fp16_operand_gradients_round_only_the_operands():
    # the backward's product takes the rounded weights and the float32 incoming gradient
    torch.manual_seed(0)
    gi = torch.randn(2, 5, 3, 12, dtype=torch.float64, requires_grad=True)
    w = (0.5 * torch.randn(2, 12, 4, dtype=torch.float64)).requires_grad_()
    b = torch.randn(2, 1, 12, dtype=torch.float64, requires_grad=True)
    dout = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    got = torch.autograd.grad((gru_recurrence(gi.float(), w.float(), b.float(), 'torch', recurrent_fp16=True)
                               * dout).sum(), (gi, w, b))
    # oracle: autograd through the equations with rounded weights; the rounding of the states
    # passes gradients as the identity
    rounded_w = w.half().double().detach().requires_grad_()
    out = _gru_chains(gi, rounded_w, b, lambda x: x + (x.half().double() - x).detach() if x is not rounded_w else x)
    expected = torch.autograd.grad((out * dout).sum(), (gi, rounded_w, b))
    for name, e, g in zip(('gi', 'w', 'b'), expected, got):
        torch.testing.assert_close(g.double(), e, rtol=2e-3, atol=2e-3, msg=name)


@pytest.mark.skipif(triton is None or torch.cuda.is_available(),
                    reason='needs Triton; with a GPU, tests/test_cuda.py checks the compiled kernels instead')
def test_triton_gate_kernels_equal_the_tensor_operations():
    # Triton's interpreter runs the CUDA kernels' code on the CPU. 40 units and 70 samples leave
    # partial tiles in both directions; float16 operands are compared with their tensor-operation
    # reference, which rounds the same values (a rounding can flip with the summation order)
    code = textwrap.dedent('''
        import torch
        from fast.recurrence import gru_recurrence
        torch.manual_seed(0)
        for groups, frames, batch, size in ((3, 6, 4, 40), (2, 4, 70, 24)):
            w = (0.3 * torch.randn(groups, 3 * size, size)).requires_grad_()
            b, b_ih = (torch.randn(groups, 1, 3 * size, requires_grad=True) for _ in 'hi')
            dout = torch.randn(groups, frames, batch, size)
            # (G, T, N, 3H), with other strides, and the encoder's fused layout (E, C, T, N, 3, H)
            chains = 2 if groups % 2 == 0 else groups
            fused = torch.randn(groups // chains, frames, batch, 3, chains, size)
            for gi, bias in ((torch.randn(groups, frames, batch, 3 * size), None),
                             (torch.randn(groups, batch, frames, 3 * size).transpose(1, 2), b_ih),
                             (fused.permute(0, 4, 1, 2, 3, 5), b_ih)):
                gi.requires_grad_()
                for fp16, kernels, tol in ((False, 'triton', 1e-5), (False, 'triton-frame', 1e-5),
                                           (True, 'triton-frame', 2e-3)):
                    grads = {}
                    inputs = (gi, w, b) if bias is None else (gi, w, b, bias)
                    for k in ('torch', kernels):
                        out = gru_recurrence(gi, w, b, k, recurrent_fp16=fp16, b_ih=bias)
                        grads[k] = [out, *torch.autograd.grad((out * dout).sum(), inputs)]
                        with torch.no_grad():
                            torch.testing.assert_close(gru_recurrence(gi, w, b, k, recurrent_fp16=fp16, b_ih=bias), out,
                                                       rtol=0, atol=0)
                    for expected, got in zip(grads['torch'], grads[kernels]):
                        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
        # both forms of the backward's product (timing picks one on a GPU)
        import triton
        from fast import recurrence as R
        groups, batch, size = 2, 70, 40
        dgh, w = torch.randn(groups, batch, 3 * size), torch.randn(groups, 3 * size, size).half()
        expected = torch.stack([dgh[..., s * size:(s + 1) * size] @ w[:, s * size:(s + 1) * size].float()
                                for s in range(3)])
        for wt in (False, True):
            part = torch.empty(3, groups, batch, size)
            R._carry_kernel[(3 * groups, triton.cdiv(batch, 64), triton.cdiv(size, 32))](
                dgh, dgh.stride(0), w, part, groups, batch, size, PRECISION='ieee', BM=64, BN=32, BK=16, WT=wt)
            torch.testing.assert_close(part, expected, rtol=1e-5, atol=1e-5)
        print('ok')
    ''')
    env = {**os.environ, 'TRITON_INTERPRET': '1', 'PYTHONPATH': ROOT}
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]
