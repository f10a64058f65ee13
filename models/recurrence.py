"""A GRU recurrence over many independent chains at once, with a hand-written backward.

``gru_recurrence(gi, w_hh, b_hh)`` runs G independent GRU chains (PyTorch's equations, gates in
(r, z, n) order, zero initial state) over T frames. Each frame is one batched matrix product
over all chains plus one gate update, so the three modalities' six chains of a layer advance
together instead of in six (cuDNN) calls; the backward keeps that shape too (one gate kernel and
one batched product per frame) and forms the weight gradient in one large product at the end.
That is some two thousand small kernels per training step, which a CUDA graph of the whole step
replays without launch gaps. On CUDA the gate updates are fused Triton kernels; elsewhere, or without Triton,
they are plain tensor operations (the reference the kernels are tested against).
"""
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU path needs no Triton
    triton = None

BLOCK = 1024


def _gates_torch(gi_t, gh, h):
    """One frame: returns the new state and what the backward needs (r, z, n, W_hn h + b_hn)."""
    size = h.shape[-1]
    rz = torch.sigmoid(gi_t[..., :2 * size] + gh[..., :2 * size])
    r, z = rz[..., :size], rz[..., size:]
    ghn = gh[..., 2 * size:]
    n = torch.tanh(torch.addcmul(gi_t[..., 2 * size:], r, ghn))
    return n + z * (h - n), (r, z, n, ghn)


def _gates_backward_torch(dh, h_prev, r, z, n, ghn):
    """Gradients of one frame's gate update: (d gi_t, d gh_t, the direct part of d h_prev)."""
    dn_pre = dh * (1 - z) * (1 - n * n)
    dr_pre = dn_pre * ghn * r * (1 - r)
    dz_pre = dh * (h_prev - n) * z * (1 - z)
    dgi = torch.cat([dr_pre, dz_pre, dn_pre], dim=-1)
    dgh = torch.cat([dr_pre, dz_pre, dn_pre * r], dim=-1)
    return dgi, dgh, dh * z


if triton is not None:
    # One lane per element (chain g, sample b, unit j) of a frame's (G, N, H) state; each tensor
    # is addressed as g * (its chain stride) + b * (its row length) + j. Arithmetic is float32
    # whatever the storage type.
    @triton.jit
    def _gates_fwd_kernel(gi_ptr, gi_sg, gh_ptr, b_ptr, h_ptr, out_ptr, out_sg, cache_ptr, cache_sg,
                          N, H, total, FIRST: tl.constexpr, SAVE: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < total
        j = idx % H
        g = idx // (N * H)
        b = (idx // H) % N
        gi = gi_ptr + g * gi_sg + b * 3 * H + j
        bias = b_ptr + g * 3 * H + j
        gh_r = tl.load(bias, mask=mask).to(tl.float32)
        gh_z = tl.load(bias + H, mask=mask).to(tl.float32)
        ghn = tl.load(bias + 2 * H, mask=mask).to(tl.float32)
        if FIRST:  # zero initial state: W_hh h vanishes
            h = tl.zeros([BLOCK], dtype=tl.float32)
        else:
            gh = gh_ptr + (g * N + b) * 3 * H + j
            gh_r += tl.load(gh, mask=mask).to(tl.float32)
            gh_z += tl.load(gh + H, mask=mask).to(tl.float32)
            ghn += tl.load(gh + 2 * H, mask=mask).to(tl.float32)
            h = tl.load(h_ptr + g * out_sg + b * H + j, mask=mask).to(tl.float32)
        r = tl.sigmoid(tl.load(gi, mask=mask).to(tl.float32) + gh_r)
        z = tl.sigmoid(tl.load(gi + H, mask=mask).to(tl.float32) + gh_z)
        a = tl.load(gi + 2 * H, mask=mask).to(tl.float32) + r * ghn
        n = 2 * tl.sigmoid(2 * a) - 1  # tanh
        tl.store(out_ptr + g * out_sg + b * H + j, (n + z * (h - n)).to(out_ptr.dtype.element_ty), mask=mask)
        if SAVE:
            c = cache_ptr + g * cache_sg + b * 4 * H + j
            ty = cache_ptr.dtype.element_ty
            tl.store(c, r.to(ty), mask=mask)
            tl.store(c + H, z.to(ty), mask=mask)
            tl.store(c + 2 * H, n.to(ty), mask=mask)
            tl.store(c + 3 * H, ghn.to(ty), mask=mask)

    @triton.jit
    def _gates_bwd_kernel(dout_ptr, carry_ptr, direct_ptr, h_ptr, out_sg, cache_ptr, cache_sg,
                          dgi_ptr, dgh_ptr, d_sg, N, H, total, FIRST: tl.constexpr, BLOCK: tl.constexpr):
        # d h_t = d out_t + (d gh_{t+1} W_hh^T) [carry] + (d h_{t+1} * z_{t+1}) [direct, updated in place]
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < total
        j = idx % H
        g = idx // (N * H)
        b = (idx // H) % N
        dh = (tl.load(dout_ptr + g * out_sg + b * H + j, mask=mask).to(tl.float32)
              + tl.load(carry_ptr + idx, mask=mask).to(tl.float32)
              + tl.load(direct_ptr + idx, mask=mask).to(tl.float32))
        c = cache_ptr + g * cache_sg + b * 4 * H + j
        r = tl.load(c, mask=mask).to(tl.float32)
        z = tl.load(c + H, mask=mask).to(tl.float32)
        n = tl.load(c + 2 * H, mask=mask).to(tl.float32)
        ghn = tl.load(c + 3 * H, mask=mask).to(tl.float32)
        if FIRST:  # the initial state is zero
            h_prev = tl.zeros([BLOCK], dtype=tl.float32)
        else:
            h_prev = tl.load(h_ptr + g * out_sg + b * H + j, mask=mask).to(tl.float32)
        dn_pre = dh * (1 - z) * (1 - n * n)
        dr_pre = dn_pre * ghn * r * (1 - r)
        dz_pre = dh * (h_prev - n) * z * (1 - z)
        ty = dgi_ptr.dtype.element_ty
        dgi = dgi_ptr + g * d_sg + b * 3 * H + j
        dgh = dgh_ptr + g * d_sg + b * 3 * H + j
        tl.store(dgi, dr_pre.to(ty), mask=mask)
        tl.store(dgi + H, dz_pre.to(ty), mask=mask)
        tl.store(dgi + 2 * H, dn_pre.to(ty), mask=mask)
        tl.store(dgh, dr_pre.to(ty), mask=mask)
        tl.store(dgh + H, dz_pre.to(ty), mask=mask)
        tl.store(dgh + 2 * H, (dn_pre * r).to(ty), mask=mask)
        tl.store(direct_ptr + idx, (dh * z).to(direct_ptr.dtype.element_ty), mask=mask)


def triton_usable(tensor):
    """Whether the fused gate kernels can run on ``tensor`` (CUDA with Triton, or Triton's
    interpreter, which runs them on the CPU for tests)."""
    if triton is None:
        return False
    return tensor.is_cuda or os.environ.get('TRITON_INTERPRET') == '1'


def _forward(gi, w_hh, b_hh, save, mode):
    """Chain-major throughout: ``gi`` (G, T, N, 3H) -> out (G, T, N, H) [, cache (G, T, N, 4H)]."""
    groups, t_len, batch, three_h = gi.shape
    size = three_h // 3
    if mode == 'triton' and gi[:, 0].stride()[1:] != (three_h, 1):
        gi = gi.contiguous()
    out = gi.new_empty(groups, t_len, batch, size)
    if mode == 'torch':
        saved, h = [], gi.new_zeros(groups, batch, size)
        for t in range(t_len):
            h, parts = _gates_torch(gi[:, t], torch.baddbmm(b_hh, h, w_hh), h)
            out[:, t] = h
            if save:
                saved.append(torch.cat(parts, dim=-1))
        return out, torch.stack(saved, dim=1) if save else None
    cache = gi.new_empty(groups, t_len, batch, 4 * size) if save else out
    gh = gi.new_empty(groups, batch, three_h)
    total = groups * batch * size
    # the bias b_hh is added in the kernel, so the product needs no copy of it first
    for t in range(t_len):
        if t:
            torch.bmm(out[:, t - 1], w_hh, out=gh)
        _gates_fwd_kernel[(triton.cdiv(total, BLOCK),)](
            gi[:, t], gi.stride(0), gh, b_hh, out[:, t - 1] if t else out[:, 0], out[:, t], out.stride(0),
            cache[:, t], cache.stride(0), batch, size, total, FIRST=t == 0, SAVE=save, BLOCK=BLOCK)
    return out, cache if save else None


def _backward_triton(dout, w_hh, out, cache):
    groups, t_len, batch, size = out.shape
    dgi = out.new_empty(groups, t_len, batch, 3 * size)
    dgh = torch.empty_like(dgi)
    carry, direct = out.new_zeros(groups, batch, size), out.new_zeros(groups, batch, size)
    w_t = w_hh.transpose(1, 2)
    total = groups * batch * size
    for t in reversed(range(t_len)):
        _gates_bwd_kernel[(triton.cdiv(total, BLOCK),)](
            dout[:, t], carry, direct, out[:, t - 1] if t else out[:, 0], out.stride(0), cache[:, t],
            cache.stride(0), dgi[:, t], dgh[:, t], dgi.stride(0), batch, size, total, FIRST=t == 0, BLOCK=BLOCK)
        if t:
            torch.bmm(dgh[:, t], w_t, out=carry)
    return dgi, dgh


def _backward_torch(dout, w_hh, out, cache):
    groups, t_len, batch, size = out.shape
    dgi = out.new_empty(groups, t_len, batch, 3 * size)
    dgh = torch.empty_like(dgi)
    carry = out.new_zeros(groups, batch, size)
    for t in reversed(range(t_len)):
        h_prev = out[:, t - 1] if t else torch.zeros_like(carry)
        r, z, n, ghn = cache[:, t].split(size, dim=-1)
        dgi[:, t], dgh[:, t], direct = _gates_backward_torch(dout[:, t] + carry, h_prev, r, z, n, ghn)
        carry = torch.baddbmm(direct, dgh[:, t], w_hh.transpose(1, 2))
    return dgi, dgh


_BACKWARD = {'torch': _backward_torch, 'triton': _backward_triton}


class _GRURecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, w_hh, b_hh, mode):
        out, cache = _forward(gi, w_hh, b_hh, save=True, mode=mode)
        ctx.mode = mode
        ctx.save_for_backward(w_hh, out, cache)
        return out

    @staticmethod
    def backward(ctx, dout):
        w_hh, out, cache = ctx.saved_tensors
        groups, _, _, size = out.shape
        dgi, dgh = _BACKWARD[ctx.mode](dout.contiguous(), w_hh, out, cache)
        # frame 0 starts from a zero state, so it adds nothing to the recurrent weight gradient;
        # chain-major storage makes both operands plain views
        dw = out[:, :-1].reshape(groups, -1, size).transpose(1, 2) @ dgh[:, 1:].reshape(groups, -1, 3 * size)
        db = dgh.sum(dim=(1, 2)).unsqueeze(1)
        return dgi, dw, db, None


KERNELS = ('auto', 'torch', 'triton')


def gru_recurrence(gi, w_hh, b_hh, kernels='auto'):
    """Outputs (G, T, N, H) of G GRU chains started from zero.

    ``gi``: (G, T, N, 3H) input projections (``W_ih x + b_ih``); ``w_hh``: (G, H, 3H)
    recurrent weights, transposed so that ``h @ w_hh`` gives the three gates; ``b_hh``: (G, 1, 3H).
    ``kernels``: 'torch' (tensor operations), 'triton' (cuBLAS products and fused Triton gate
    kernels) or 'auto' (Triton on CUDA when it is installed, else tensor operations).
    """
    if kernels not in KERNELS:
        raise ValueError(f'kernels must be one of {", ".join(map(repr, KERNELS))}, got {kernels!r}')
    if kernels == 'triton' and not triton_usable(gi):
        raise RuntimeError('the Triton kernels need Triton and a CUDA tensor (or TRITON_INTERPRET=1)')
    mode = kernels if kernels != 'auto' else ('triton' if gi.is_cuda and triton is not None else 'torch')
    w_hh, b_hh = w_hh.to(gi.dtype), b_hh.to(gi.dtype)
    if torch.is_grad_enabled() and (gi.requires_grad or w_hh.requires_grad or b_hh.requires_grad):
        return _GRURecurrence.apply(gi, w_hh, b_hh, mode)
    return _forward(gi, w_hh, b_hh, save=False, mode=mode)[0]
