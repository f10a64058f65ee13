"""A GRU recurrence over many independent chains at once, with a hand-written backward.

``gru_recurrence(gi, w_hh, b_hh)`` runs G independent GRU chains (PyTorch's equations, gates in
(r, z, n) order, zero initial state) over T frames, so the three modalities' six chains of a
layer advance together instead of in six (cuDNN) calls. Three implementations of one function:

- ``'torch'``: tensor operations, per frame one batched product and the gate update (the
  reference the kernels are tested against; also the CPU path);
- ``'triton'``: per frame one cuBLAS batched product and one fused Triton gate kernel;
- ``'triton-frame'``: per frame one Triton kernel, the product with the gate update as its
  epilogue, so the products' (G, N, 3H) result never goes through memory.

The backward keeps that shape (per frame the gate gradients and one product: cuBLAS, or for
'triton-frame' a Triton product split three ways along its reduction, whose partial sums the
gate kernel adds in a fixed order) and forms the weight gradient in one large product at the
end. That is some two thousand small kernels per training step, which a CUDA graph of the whole
step replays without launch gaps.

The input projections may come in groups of chains with any strides, (E, C, T, N, 3, H): the
encoder computes one product per modality for both of its chains, whose columns are (gate,
chain, unit), and the kernels read it in place and write its gradient in the same layout; the
input bias is added in the kernels, so the product needs no bias pass either.

``recurrent_fp16=True`` rounds the recurrent products' operands to float16: the weights (forward
and backward) and the states (forward). float16 keeps the 10-bit fraction that TF32 products
keep, in half the bytes; the forward products are memory-bound (the weights of a frame's
product exceed the L2 cache at the published size), so this about halves their time (figures
in ``benchmarks/RESULTS.md``). It differs from TF32 only for magnitudes under 2^-14 (6.1e-5),
where float16 keeps an absolute error of at most 2^-25 instead of a relative one (TF32's error
at 2^-14 is that same 2^-25), and above 65,504, which GRU states (bounded by 1) and trained
weights do not reach.
The incoming gradients of the backward stay float32 (their range needs it), so its products are
TF32 with float16 weights.
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
    def _gate_update(gi, gi_sgate, gh_r, gh_z, b_in, ghn, h, out, cache, mask, H, SAVE: tl.constexpr):
        """One frame's gate equations in float32: ``gi`` points at the r inputs (z and n follow at
        +gi_sgate and +2 gi_sgate), ``gh_r``, ``gh_z`` are the recurrent terms with both biases,
        ``b_in`` the n input's bias and ``ghn`` W_hn h + b_hn. Stores the new state at ``out`` and,
        with SAVE, (r, z, n, ghn) at ``cache`` (+0, +H, +2H, +3H)."""
        r = tl.sigmoid(tl.load(gi, mask=mask, other=0.0).to(tl.float32) + gh_r)
        z = tl.sigmoid(tl.load(gi + gi_sgate, mask=mask, other=0.0).to(tl.float32) + gh_z)
        gin = tl.load(gi + 2 * gi_sgate, mask=mask, other=0.0).to(tl.float32) + b_in
        n = 2 * tl.sigmoid(2 * (gin + r * ghn)) - 1  # tanh
        new = n + z * (h - n)
        tl.store(out, new.to(out.dtype.element_ty), mask=mask)
        if SAVE:
            ty = cache.dtype.element_ty
            tl.store(cache, r.to(ty), mask=mask)
            tl.store(cache + H, z.to(ty), mask=mask)
            tl.store(cache + 2 * H, n.to(ty), mask=mask)
            tl.store(cache + 3 * H, ghn.to(ty), mask=mask)
        return new

    @triton.jit
    def _chain(g, se, sc, CH: tl.constexpr):
        """Offset of chain ``g``'s projections: chain g % CH of group g // CH (module docstring)."""
        return (g // CH) * se + (g % CH) * sc

    @triton.jit
    def _gates_fwd_kernel(gi_ptr, gi_se, gi_sc, gi_sn, gi_sgate, bi_ptr, gh_ptr, b_ptr, h_ptr, out_ptr, out_sg,
                          cache_ptr, cache_sg, N, H, total, CH: tl.constexpr, FIRST: tl.constexpr,
                          SAVE: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < total
        j = idx % H
        g = idx // (N * H)
        b = (idx // H) % N
        gi = gi_ptr + _chain(g, gi_se, gi_sc, CH) + b * gi_sn + j
        bias, bias_i = b_ptr + g * 3 * H + j, bi_ptr + g * 3 * H + j
        gh_r = tl.load(bias, mask=mask).to(tl.float32) + tl.load(bias_i, mask=mask).to(tl.float32)
        gh_z = tl.load(bias + H, mask=mask).to(tl.float32) + tl.load(bias_i + H, mask=mask).to(tl.float32)
        ghn = tl.load(bias + 2 * H, mask=mask).to(tl.float32)
        b_in = tl.load(bias_i + 2 * H, mask=mask).to(tl.float32)
        if FIRST:  # zero initial state: W_hh h vanishes
            h = tl.zeros([BLOCK], dtype=tl.float32)
        else:
            gh = gh_ptr + (g * N + b) * 3 * H + j
            gh_r += tl.load(gh, mask=mask).to(tl.float32)
            gh_z += tl.load(gh + H, mask=mask).to(tl.float32)
            ghn += tl.load(gh + 2 * H, mask=mask).to(tl.float32)
            h = tl.load(h_ptr + g * out_sg + b * H + j, mask=mask).to(tl.float32)
        _gate_update(gi, gi_sgate, gh_r, gh_z, b_in, ghn, h, out_ptr + g * out_sg + b * H + j,
                     cache_ptr + g * cache_sg + b * 4 * H + j, mask, H, SAVE)

    @triton.jit
    def _gates_bwd_kernel(dout_ptr, carry_ptr, direct_ptr, h_ptr, out_sg, cache_ptr, cache_sg,
                          dgi_ptr, dgi_se, dgi_sc, dgi_sn, dgi_sgate, dgh_ptr, dgh_sg, N, H, total,
                          CH: tl.constexpr, FIRST: tl.constexpr, SPLITS: tl.constexpr, BLOCK: tl.constexpr):
        # d h_t = d out_t + (d gh_{t+1} W_hh) [carry, the sum of SPLITS (G, N, H) partial products]
        #       + (d h_{t+1} * z_{t+1}) [direct, updated in place]
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = idx < total
        j = idx % H
        g = idx // (N * H)
        b = (idx // H) % N
        dh = (tl.load(dout_ptr + g * out_sg + b * H + j, mask=mask).to(tl.float32)
              + tl.load(direct_ptr + idx, mask=mask).to(tl.float32))
        for s in tl.static_range(SPLITS):  # a fixed order: the sum does not depend on scheduling
            dh += tl.load(carry_ptr + s * total + idx, mask=mask).to(tl.float32)
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
        dgi = dgi_ptr + _chain(g, dgi_se, dgi_sc, CH) + b * dgi_sn + j
        dgh = dgh_ptr + g * dgh_sg + b * 3 * H + j
        tl.store(dgi, dr_pre.to(ty), mask=mask)
        tl.store(dgi + dgi_sgate, dz_pre.to(ty), mask=mask)
        tl.store(dgi + 2 * dgi_sgate, dn_pre.to(ty), mask=mask)
        tl.store(dgh, dr_pre.to(ty), mask=mask)
        tl.store(dgh + H, dz_pre.to(ty), mask=mask)
        tl.store(dgh + 2 * H, (dn_pre * r).to(ty), mask=mask)
        tl.store(direct_ptr + idx, (dh * z).to(direct_ptr.dtype.element_ty), mask=mask)

    # One kernel per frame after the first (which has no product): the recurrent product on the
    # tensor cores with the gate update as its epilogue. A program owns BM samples x BN hidden
    # units of one chain and computes all three gates' columns for them. The state operand
    # ``hop`` is the previous output itself or, when the operands are rounded to another type,
    # its rounded copy, which the kernel writes for the next frame (WRITE_OP) into the other half
    # of a ping-pong buffer.
    @triton.jit
    def _row(ptr, mask):
        return tl.load(ptr, mask=mask, other=0.0).to(tl.float32)[None, :]

    @triton.jit
    def _frame_fwd_kernel(hop_ptr, hop_sg, nop_ptr, w_ptr, gi_ptr, gi_se, gi_sc, gi_sn, gi_sgate, bi_ptr, b_ptr,
                          h_ptr, out_ptr, out_sg, cache_ptr, cache_sg, N, H, CH: tl.constexpr, SAVE: tl.constexpr,
                          WRITE_OP: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                          BK: tl.constexpr):
        g = tl.program_id(0)
        rows = tl.program_id(1) * BM + tl.arange(0, BM)
        cols = tl.program_id(2) * BN + tl.arange(0, BN)
        rmask, cmask = rows < N, cols < H
        mask = rmask[:, None] & cmask[None, :]
        acc_r = tl.zeros((BM, BN), dtype=tl.float32)
        acc_z = tl.zeros((BM, BN), dtype=tl.float32)
        acc_n = tl.zeros((BM, BN), dtype=tl.float32)
        a_rows = hop_ptr + g * hop_sg + rows[:, None] * H
        w_cols = w_ptr + g * 3 * H * H + cols[None, :] * H  # W_hh^T: W_hh's rows are the gates' units
        for k0 in range(0, H, BK):
            ks = k0 + tl.arange(0, BK)
            kmask = ks < H
            a = tl.load(a_rows + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
            w = w_cols + ks[:, None]
            w_mask = kmask[:, None] & cmask[None, :]
            acc_r = tl.dot(a, tl.load(w, mask=w_mask, other=0.0), acc_r, input_precision=PRECISION)
            acc_z = tl.dot(a, tl.load(w + H * H, mask=w_mask, other=0.0), acc_z, input_precision=PRECISION)
            acc_n = tl.dot(a, tl.load(w + 2 * H * H, mask=w_mask, other=0.0), acc_n, input_precision=PRECISION)
        state = rows[:, None] * H + cols[None, :]
        h = tl.load(h_ptr + g * out_sg + state, mask=mask, other=0.0).to(tl.float32)
        bias, bias_i = b_ptr + g * 3 * H + cols, bi_ptr + g * 3 * H + cols
        gh_r = acc_r + _row(bias, cmask) + _row(bias_i, cmask)
        gh_z = acc_z + _row(bias + H, cmask) + _row(bias_i + H, cmask)
        gi = gi_ptr + _chain(g, gi_se, gi_sc, CH) + rows[:, None] * gi_sn + cols[None, :]
        new = _gate_update(gi, gi_sgate, gh_r, gh_z, _row(bias_i + 2 * H, cmask), acc_n + _row(bias + 2 * H, cmask), h,
                           out_ptr + g * out_sg + state, cache_ptr + g * cache_sg + rows[:, None] * 4 * H + cols[None, :],
                           mask, H, SAVE)
        if WRITE_OP:
            tl.store(nop_ptr + g * hop_sg + state, new.to(nop_ptr.dtype.element_ty), mask=mask)

    # The backward's product, split three ways along its reduction (one gate each): program (g, s)
    # writes part[s, g] = d gh_t[g][:, sH:(s+1)H] @ W_hh[g][sH:(s+1)H], which the gate kernel
    # sums. The whole product in each program would read all of d gh_t once per column block,
    # and too few programs would share the GPU's bandwidth. With float16 weights and float32
    # gradients the weights are widened in registers; WT computes the transposed product
    # (W^T d gh^T) so that the widened tile is the operand the tensor cores take from registers
    # and the other one streams from shared memory unchanged. Timing picks either form.
    @triton.jit
    def _carry_kernel(dgh_ptr, d_sg, w_ptr, part_ptr, G, N, H, PRECISION: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, WT: tl.constexpr):
        g, s = tl.program_id(0) // 3, tl.program_id(0) % 3
        rows = tl.program_id(1) * BM + tl.arange(0, BM)
        cols = tl.program_id(2) * BN + tl.arange(0, BN)
        rmask, cmask = rows < N, cols < H
        if WT:
            acc = tl.zeros((BN, BM), dtype=tl.float32)
        else:
            acc = tl.zeros((BM, BN), dtype=tl.float32)
        a_rows = dgh_ptr + g * d_sg + rows[:, None] * 3 * H + s * H
        w_cols = w_ptr + g * 3 * H * H + s * H * H + cols[None, :]
        for k0 in range(0, H, BK):
            ks = k0 + tl.arange(0, BK)
            kmask = ks < H
            a = tl.load(a_rows + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
            w = tl.load(w_cols + ks[:, None] * H, mask=kmask[:, None] & cmask[None, :], other=0.0)
            if WT:
                acc = tl.dot(tl.trans(w).to(a.dtype), tl.trans(a), acc, input_precision=PRECISION)
            else:
                acc = tl.dot(a, w.to(a.dtype), acc, input_precision=PRECISION)
        part = part_ptr + (s * G + g) * N * H
        if WT:
            tl.store(part + rows[None, :] * H + cols[:, None], acc, mask=rmask[None, :] & cmask[:, None])
        else:
            tl.store(part + rows[:, None] * H + cols[None, :], acc, mask=rmask[:, None] & cmask[None, :])

    def _tuned(kernel, shapes, key):
        """The kernel with its tile shapes (BN, BK, stages, other options) picked by timing on first use per key
        (and argument types); Triton's interpreter cannot time, so there it takes the first. Both
        kernels may be rerun on the same arguments (neither reads what it writes), which the
        timing needs. The keys leave out the flags that only add or drop stores."""
        configs = [triton.Config({'BN': bn, 'BK': bk, **extra}, num_warps=4, num_stages=stages)
                   for bn, bk, stages, extra in shapes]
        if os.environ.get('TRITON_INTERPRET') == '1':
            return lambda grid: lambda *args, **kwargs: kernel[grid](*args, **kwargs, **configs[0].kwargs)
        tuned = triton.autotune(configs, key=key)(kernel)
        return lambda grid: tuned[grid]

    _frame_fwd = _tuned(_frame_fwd_kernel, [(32, 64, 4, {}), (32, 128, 3, {}), (16, 128, 4, {}), (64, 64, 3, {}),
                                            (16, 64, 5, {}), (16, 256, 3, {})], key=['N', 'H', 'PRECISION'])
    _carry = _tuned(_carry_kernel, [(bn, bk, stages, {'WT': wt}) for wt in (False, True)
                                    for bn, bk, stages in ((64, 64, 4), (128, 64, 3), (128, 32, 4), (64, 32, 4),
                                                           (32, 64, 4))], key=['G', 'N', 'H', 'PRECISION'])


def triton_usable(tensor):
    """Whether the fused gate kernels can run on ``tensor`` (CUDA with Triton, or Triton's
    interpreter, which runs them on the CPU for tests)."""
    if triton is None:
        return False
    return tensor.is_cuda or os.environ.get('TRITON_INTERPRET') == '1'


def _precision(dtype):
    """The tensor-core precision of a Triton product of ``dtype`` operands: TF32 for float32
    where PyTorch's matmul switch allows it (as cuBLAS does), full float32 where it does not."""
    return 'tf32' if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else 'ieee'


def _tiles(batch, size, first):
    """(BM, grid) of a tuned kernel: ``first`` programs along the grid's first axis (chains, or
    chains x splits), then blocks of BM samples and of BN (tuned) hidden units."""
    bm = min(64, max(16, triton.next_power_of_2(batch)))
    return bm, lambda meta: (first, triton.cdiv(batch, bm), triton.cdiv(size, meta['BN']))


def _gi_strides(gi):
    """The group, chain, sample and gate strides of ``gi`` (E, C, T, N, 3, H): the kernels'
    addressing of a frame's projections (or their gradient), with CH = C."""
    return gi.stride(0), gi.stride(1), gi.stride(3), gi.stride(4)


def _forward(gi, w_op, b_ih, b_hh, save, mode):
    """``gi`` (E, C, T, N, 3, H), unit stride along H -> out (G, T, N, H) [, cache (G, T, N, 4H)],
    chain-major (G = E x C). ``w_op``: the recurrent weights (G, 3H, H) in the products' operand
    type."""
    groups, chains, t_len, batch, _, size = gi.shape
    groups *= chains
    out = gi.new_empty(groups, t_len, batch, size)
    if mode == 'torch':
        saved, h, w_t = [], gi.new_zeros(groups, batch, size), w_op.to(gi.dtype).transpose(1, 2)
        for t in range(t_len):
            gh = torch.baddbmm(b_hh, h.to(w_op.dtype).to(gi.dtype), w_t)
            h, parts = _gates_torch(gi[:, :, t].reshape(groups, batch, 3 * size) + b_ih, gh, h)
            out[:, t] = h
            if save:
                saved.append(torch.cat(parts, dim=-1))
        return out, torch.stack(saved, dim=1) if save else None
    cache = gi.new_empty(groups, t_len, batch, 4 * size) if save else out
    total = groups * batch * size
    gates = (triton.cdiv(total, BLOCK),)
    s, ch = _gi_strides(gi), gi.shape[1]
    if mode == 'triton-frame':
        separate = w_op.dtype != gi.dtype
        # frame 0 starts from a zero state: no product, the gate kernel alone
        _gates_fwd_kernel[gates](gi[:, :, 0], *s, b_ih, gi, b_hh, gi, out[:, 0], out.stride(0), cache[:, 0],
                                 cache.stride(0), batch, size, total, CH=ch, FIRST=True, SAVE=save, BLOCK=BLOCK)
        if separate:
            ops = gi.new_empty(2, groups, batch, size, dtype=w_op.dtype)
            ops[0].copy_(out[:, 0])
        bm, grid = _tiles(batch, size, groups)
        launch = _frame_fwd(grid)
        for t in range(1, t_len):
            if separate:
                hop, hop_sg, nop = ops[(t - 1) % 2], batch * size, ops[t % 2]
            else:
                hop, hop_sg, nop = out[:, t - 1], out.stride(0), out[:, t]
            launch(hop, hop_sg, nop, w_op, gi[:, :, t], *s, b_ih, b_hh, out[:, t - 1], out[:, t], out.stride(0),
                   cache[:, t], cache.stride(0), batch, size, CH=ch, SAVE=save, WRITE_OP=separate,
                   PRECISION=_precision(w_op.dtype), BM=bm)
        return out, cache if save else None
    gh = gi.new_empty(groups, batch, 3 * size)
    w_t = w_op.transpose(1, 2)
    # the bias b_hh is added in the kernel, so the product needs no copy of it first
    for t in range(t_len):
        if t:
            torch.bmm(out[:, t - 1], w_t, out=gh)
        _gates_fwd_kernel[gates](
            gi[:, :, t], *s, b_ih, gh, b_hh, out[:, t - 1] if t else out[:, 0], out[:, t], out.stride(0), cache[:, t],
            cache.stride(0), batch, size, total, CH=ch, FIRST=t == 0, SAVE=save, BLOCK=BLOCK)
    return out, cache if save else None


def _backward_triton(dout, w_op, out, cache, dgi, mode):
    """Per frame (last first) the gate kernel, then the product that carries d h back a frame:
    one cuBLAS product ('triton') or the split Triton product ('triton-frame'). Fills ``dgi``
    (E, C, T, N, 3, H), returns d gh (G, T, N, 3H)."""
    groups, t_len, batch, size = out.shape
    dgh = out.new_empty(groups, t_len, batch, 3 * size)
    splits = 3 if mode == 'triton-frame' else 1
    carry = out.new_empty(splits, groups, batch, size, dtype=torch.float32 if splits > 1 else out.dtype)
    direct = out.new_zeros(groups, batch, size)
    total = groups * batch * size
    s, ch = _gi_strides(dgi), dgi.shape[1]
    if splits > 1:
        bm, grid = _tiles(batch, size, 3 * groups)
        product = _carry(grid)
    for t in reversed(range(t_len)):
        # the last frame receives nothing from a later one
        _gates_bwd_kernel[(triton.cdiv(total, BLOCK),)](
            dout[:, t], carry, direct, out[:, t - 1] if t else out[:, 0], out.stride(0), cache[:, t],
            cache.stride(0), dgi[:, :, t], *s, dgh[:, t], dgh.stride(0), batch, size, total, CH=ch, FIRST=t == 0,
            SPLITS=splits if t + 1 < t_len else 0, BLOCK=BLOCK)
        if t and splits > 1:
            product(dgh[:, t], dgh.stride(0), w_op, carry, groups, batch, size, PRECISION=_precision(out.dtype),
                    BM=bm)
        elif t:
            torch.bmm(dgh[:, t], w_op, out=carry[0])
    return dgh


def _backward_torch(dout, w_op, out, cache, dgi):
    groups, t_len, batch, size = out.shape
    dgh = out.new_empty(groups, t_len, batch, 3 * size)
    carry = out.new_zeros(groups, batch, size)
    w = w_op.to(out.dtype)
    for t in reversed(range(t_len)):
        h_prev = out[:, t - 1] if t else torch.zeros_like(carry)
        r, z, n, ghn = cache[:, t].split(size, dim=-1)
        dgi_t, dgh[:, t], direct = _gates_backward_torch(dout[:, t] + carry, h_prev, r, z, n, ghn)
        dgi[:, :, t] = dgi_t.view(dgi[:, :, t].shape)
        carry = torch.baddbmm(direct, dgh[:, t], w)
    return dgh


class _GRURecurrence(torch.autograd.Function):
    # the gradient passes the operands' rounding as the identity, as autocast's casts do
    @staticmethod
    def forward(ctx, gi, w_hh, b_ih, b_hh, w_op, mode):
        out, cache = _forward(gi, w_op, b_ih, b_hh, save=True, mode=mode)
        # the gradient takes gi's layout (not gi itself, which need not stay in memory), so the
        # input projection's backward takes it without a copy
        ctx.mode, ctx.gi_layout = mode, torch.empty_like(gi, device='meta')
        ctx.save_for_backward(w_op, out, cache)
        return out

    @staticmethod
    def backward(ctx, dout):
        w_op, out, cache = ctx.saved_tensors
        groups, _, _, size = out.shape
        dgi = out.new_empty_strided(ctx.gi_layout.shape, ctx.gi_layout.stride())
        if ctx.mode == 'torch':
            dgh = _backward_torch(dout.contiguous(), w_op, out, cache, dgi)
        else:
            dgh = _backward_triton(dout.contiguous(), w_op, out, cache, dgi, ctx.mode)
        # frame 0 starts from a zero state, so it adds nothing to the recurrent weight gradient;
        # chain-major storage makes both operands plain views
        dw = dgh[:, 1:].reshape(groups, -1, 3 * size).transpose(1, 2) @ out[:, :-1].reshape(groups, -1, size)
        db_ih = dgi.sum(dim=(2, 3)).reshape(groups, 1, 3 * size) if ctx.needs_input_grad[2] else None
        db_hh = dgh.sum(dim=(1, 2)).unsqueeze(1)
        return dgi, dw, db_ih, db_hh, None, None


KERNELS = ('auto', 'torch', 'triton', 'triton-frame')


def gru_recurrence(gi, w_hh, b_hh, kernels='auto', recurrent_fp16=False, b_ih=None):
    """Outputs (G, T, N, H) of G GRU chains started from zero.

    ``gi``: the input projections ``W_ih x`` (G, T, N, 3H), or (E, C, T, N, 3, H) for G = E x C
    chains in groups of C (any strides with unit stride along H: the fused layout of
    :func:`fast.grouped.grouped_features`, whose groups' products serve C chains at once);
    ``w_hh``: (G, 3H, H) recurrent weights, each chain's as in ``torch.nn.GRU`` (``h @ w_hh[g].T``
    gives the three gates); ``b_hh``, ``b_ih``: (G, 1, 3H), ``b_ih`` None if ``gi`` includes it.
    ``kernels``: 'torch' (tensor operations), 'triton' (cuBLAS products and fused Triton gate
    kernels), 'triton-frame' (one Triton kernel per frame) or 'auto' (on CUDA with Triton,
    'triton-frame' with ``recurrent_fp16``, else 'triton'; else 'torch'). ``recurrent_fp16``: round
    the recurrent products' operands to float16 (module docstring); needs float32 ``gi`` and
    'torch' or 'triton-frame' kernels.
    """
    if kernels not in KERNELS:
        raise ValueError(f'kernels must be one of {", ".join(map(repr, KERNELS))}, got {kernels!r}')
    if kernels.startswith('triton') and not triton_usable(gi):
        raise RuntimeError(f'the {kernels!r} kernels need Triton and a CUDA tensor (or TRITON_INTERPRET=1)')
    if kernels == 'auto':
        mode = ('triton-frame' if recurrent_fp16 else 'triton') if gi.is_cuda and triton is not None else 'torch'
    else:
        mode = kernels
    if recurrent_fp16:
        if gi.dtype != torch.float32:
            raise ValueError(f'recurrent_fp16 rounds float32 operands; the inputs are {gi.dtype}')
        if mode == 'triton':
            raise ValueError("recurrent_fp16 needs kernels 'torch' or 'triton-frame' (cuBLAS products take "
                             'operands of one type)')
    if gi.dim() == 4:
        gi = gi.unflatten(-1, (3, -1)).unsqueeze(1)
    elif gi.dim() != 6:
        raise ValueError(f'gi must be (G, T, N, 3H) or (E, C, T, N, 3, H), got shape {tuple(gi.shape)}')
    if mode != 'torch' and gi.stride(-1) != 1:  # the kernels address units one apart
        gi = gi.contiguous()
    w_hh, b_hh = w_hh.to(gi.dtype), b_hh.to(gi.dtype)
    b_ih = b_hh.new_zeros(b_hh.shape) if b_ih is None else b_ih.to(gi.dtype)
    w_op = w_hh.detach().to(torch.float16) if recurrent_fp16 else w_hh.detach()
    if mode == 'triton-frame':
        w_op = w_op.contiguous()
    if torch.is_grad_enabled() and any(x.requires_grad for x in (gi, w_hh, b_ih, b_hh)):
        return _GRURecurrence.apply(gi, w_hh, b_ih, b_hh, w_op, mode)
    return _forward(gi, w_op, b_ih, b_hh, save=False, mode=mode)[0]
