"""All modalities' published-mode GRU encoders of one side computed together: per layer, each
encoder's input products in one GEMM on its fused parameters, then one recurrence that advances
every encoder's chains frame by frame (docs/fast-path.md). The same function as
:meth:`models.gru.GRUEncoder.features`, laid out for CUDA graphs."""
import torch

from fast.recurrence import gru_recurrence


def _chain_rows(fused, hidden):
    """A fused (6H, ...) gate-stacked tensor -> a (2, 3, H, ...) view: per chain, its gate blocks."""
    return fused.view(3, 2, hidden, -1).transpose(0, 1)


def _recurrent_blocks(fused, hidden):
    """The block-diagonal (6H, 2H) recurrent matrix -> a (2, 3, H, H) view of its two chains' blocks."""
    blocks = fused.view(3, 2, hidden, 2, hidden).diagonal(dim1=1, dim2=3)  # (gate, out, in, chain)
    return blocks.permute(3, 0, 1, 2)


class _InputProjection(torch.autograd.Function):
    """``W_ih x`` of each encoder's fused layer: x (E, ..., F) with any strides, weights E x
    (6H, F) -> (E, R, 6H), R the rows of one encoder. One product per encoder serves both of its
    chains, and the weights are the parameters themselves (no gathered copy). ``fp16`` rounds
    the forward's operands to float16, which keeps TF32's 10-bit fraction and runs at twice its
    rate on tensor cores (:mod:`fast.recurrence`); the backward stays float32 (TF32 where
    allowed), passing the rounding as the identity. ``dtype``: autocast's type where it is on
    (both passes then compute in it, as autocast's products would), else None."""

    @staticmethod
    def forward(ctx, x, fp16, dtype, *weights):
        count, features = x.shape[0], weights[0].shape[1]
        ctx.x_shape, ctx.dtypes = x.shape, (x.dtype, weights[0].dtype)
        if fp16:
            a = x.new_empty(x.shape, dtype=torch.float16).copy_(x).view(count, -1, features)
            w = a.new_empty(count, *weights[0].shape)
            for e, weight in enumerate(weights):
                w[e].copy_(weight)
            if a.is_cuda:
                gi = torch.bmm(a, w.transpose(1, 2), out_dtype=torch.float32)
            else:  # float16 products are exact in float32, which accumulates as the GPU does
                gi = torch.bmm(a.to(x.dtype), w.to(x.dtype).transpose(1, 2))
            ctx.save_for_backward(x, *weights)
            return gi
        a = x.reshape(count, -1, features).to(dtype or x.dtype)
        weights = [w.to(a.dtype) for w in weights]
        gi = a.new_empty(count, a.shape[1], weights[0].shape[0])
        for e, weight in enumerate(weights):
            torch.mm(a[e], weight.t(), out=gi[e])
        ctx.save_for_backward(a, *weights)
        return gi

    @staticmethod
    def backward(ctx, dgi):
        a, *weights = ctx.saved_tensors
        a = a.reshape(dgi.shape[0], dgi.shape[1], -1)
        dgi = dgi.to(a.dtype)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = a.new_empty(a.shape)
            for e, weight in enumerate(weights):
                torch.mm(dgi[e], weight, out=dx[e])
            dx = dx.view(ctx.x_shape).to(ctx.dtypes[0])
        dws = [(dgi[e].t() @ a[e]).to(ctx.dtypes[1]) if ctx.needs_input_grad[3 + e] else None
               for e in range(len(weights))]
        return dx, None, None, *dws


def grouped_features(encoders, inputs, kernels='auto', recurrent_fp16=False):
    """``[e.features(x) for e, x in zip(encoders, inputs)]`` for published-mode encoders of one
    shape, computed together: per layer, each encoder's input projection and one recurrence that
    advances all encoders' chains frame by frame (:func:`fast.recurrence.gru_recurrence`).
    The same function as the fused cuDNN call, in a form a CUDA graph replays with few gaps
    (``recurrent_fp16``: the layers' products take float16 operands, :mod:`fast.recurrence`)."""
    first = encoders[0]
    if any(e.mode != 'published' or e.pool != first.pool or e.gru.weight_hh_l0.shape != first.gru.weight_hh_l0.shape
           for e in encoders):
        raise ValueError('grouped_features needs published-mode GRU encoders of one shape and pooling')
    hidden, count = first.hidden_size, len(encoders)
    n, c, t, v, m = inputs[0].shape
    rows = []
    for encoder, x in zip(encoders, inputs):
        x = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)
        x = encoder.input_norm(x.transpose(1, 2))  # (N, F, T)
        rows.append(x.permute(2, 0, 1).reshape(t * n, -1))  # frame-major rows
    x = torch.stack(rows)  # (encoders, T*N, F)
    device = x.device.type
    amp = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    for layer in range(first.num_layers):
        def stacked(kind, blocks):
            # one copy: (encoders x 2 chains, 3H, ...), each chain's rows gate-stacked as in nn.GRU
            return torch.cat([blocks(getattr(e.gru, f'{kind}_l{layer}'), hidden) for e in encoders]).flatten(1, 2)
        w_hh = stacked('weight_hh', _recurrent_blocks)
        b_ih = stacked('bias_ih', _chain_rows).transpose(1, 2)
        b_hh = stacked('bias_hh', _chain_rows).transpose(1, 2)
        gi = _InputProjection.apply(x, recurrent_fp16, amp, *(getattr(e.gru, f'weight_ih_l{layer}') for e in encoders))
        # the fused layout's columns are (gate, chain, unit): a view as (encoder, chain, T, N, gate, unit)
        gi = gi.view(count, t, n, 3, 2, hidden).permute(0, 4, 1, 2, 3, 5)
        out = gru_recurrence(gi, w_hh, b_hh, kernels, recurrent_fp16, b_ih=b_ih)  # (2 * encoders, T, N, H)
        if layer + 1 < first.num_layers:
            x = out.view(count, 2, t, n, hidden).permute(0, 2, 3, 1, 4)  # (encoders, T, N, chain, H)
    pooled = out.mean(1) if first.pool == 'mean' else out[:, -1]
    return list(pooled.view(count, 2, n, hidden).transpose(1, 2).reshape(count, n, 2 * hidden).unbind(0))
