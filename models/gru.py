"""The published GRU encoder (method notes, section 6), computed with full-sequence calls."""
import torch
from torch import nn

from models.recurrence import gru_recurrence


def projection_head(in_dim, dim, mlp):
    """``fc``: Linear(in, dim), or with ``mlp`` Linear(in, in) -> ReLU -> Linear(in, dim).

    The published code Xavier-initialises the original ``fc`` (the last layer); the MLP's extra
    hidden layer keeps PyTorch's default init.
    """
    last = nn.Linear(in_dim, dim)
    nn.init.xavier_uniform_(last.weight)
    if not mlp:
        return last
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), last)


def fuse_chains(forward, reverse):
    """Stack two chains' gate-stacked (3H, ...) tensors into one hidden-2H GRU's layout.

    Gate blocks stay in PyTorch's (r, z, n) order; within each gate the first H rows are the
    ``forward`` chain, the next H the ``reverse`` chain.
    """
    h = forward.shape[0] // 3
    return torch.cat([torch.cat([forward[g * h:(g + 1) * h], reverse[g * h:(g + 1) * h]]) for g in range(3)])


def split_chains(fused):
    """Inverse of :func:`fuse_chains`."""
    h = fused.shape[0] // 6
    blocks = fused.view(3, 2, h, *fused.shape[1:])
    return blocks[:, 0].reshape(3 * h, *fused.shape[1:]), blocks[:, 1].reshape(3 * h, *fused.shape[1:])


def block_diagonal(forward, reverse):
    """Recurrent weights (3H, H) of both chains -> (6H, 2H): each chain only sees its own state."""
    zeros = forward.new_zeros(forward.shape)
    return fuse_chains(torch.cat([forward, zeros], 1), torch.cat([zeros, reverse], 1))


class GRUEncoder(nn.Module):
    """BatchNorm over the flattened (joint, xyz, person) features, a 3-layer recurrent stack,
    the last frame's output as the feature and a projection head ``fc``.

    ``mode='published'`` is the function the released checkpoints compute: each layer is two
    independent forward-in-time GRU chains over the same input (the "bidirectional" GRU of the
    published code, run one frame at a time). It is computed here as one GRU of hidden 2H whose
    recurrent matrix is block-diagonal per gate, so cuDNN (or the CPU kernel) runs all layers in
    one call; a gradient mask keeps the off-diagonal blocks exactly zero. ``mode='bidirectional'``
    is a true bidirectional GRU whose feature joins the forward direction's last state with the
    backward direction's state at frame 0.
    """

    def __init__(self, in_features, hidden_size=1024, num_layers=3, dim=128, mlp=True, mode='published'):
        super().__init__()
        if mode not in ('published', 'bidirectional'):
            raise ValueError(f"gru mode must be 'published' or 'bidirectional', got {mode!r}")
        self.mode, self.hidden_size, self.num_layers = mode, hidden_size, num_layers
        self.feature_dim = 2 * hidden_size
        self.input_norm = nn.BatchNorm1d(in_features)
        published = nn.GRU(in_features, hidden_size, num_layers, batch_first=True, bidirectional=True)
        for name, param in published.named_parameters():
            if param.dim() == 2:
                nn.init.xavier_uniform_(param)
        if mode == 'published':
            self.gru = nn.GRU(in_features, 2 * hidden_size, num_layers, batch_first=True)
            self.load_published_gru(published.state_dict())
            mask = block_diagonal(torch.ones(3 * hidden_size, hidden_size), torch.ones(3 * hidden_size, hidden_size))
            self.register_buffer('hh_mask', mask.bool(), persistent=False)
            self._register_grad_masks()
        else:
            self.gru = published
        self.fc = projection_head(self.feature_dim, dim, mlp)

    @property
    def fixed_zeros(self):
        """Entries of the fused recurrent matrices that are structurally zero (not parameters of
        the published model)."""
        return int((~self.hh_mask).sum()) * self.num_layers if self.mode == 'published' else 0

    def _register_grad_masks(self):
        for layer in range(self.num_layers):
            getattr(self.gru, f'weight_hh_l{layer}').register_hook(lambda grad: grad * self.hh_mask)

    def __setstate__(self, state):
        # Tensor hooks do not survive copy.deepcopy or pickling; put the masks back.
        super().__setstate__(state)
        if self.mode == 'published':
            self._register_grad_masks()

    @torch.no_grad()
    def load_published_gru(self, state):
        """Load the per-chain weights (``weight_ih_l0``, ``..._l0_reverse``, ...) of the released
        bidirectional GRU."""
        if self.mode == 'bidirectional':
            self.gru.load_state_dict(state)
            return
        for layer in range(self.num_layers):
            for kind in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
                fwd, rev = state[f'{kind}_l{layer}'], state[f'{kind}_l{layer}_reverse']
                fuse = block_diagonal if kind == 'weight_hh' else fuse_chains
                getattr(self.gru, f'{kind}_l{layer}').copy_(fuse(fwd, rev))

    def published_gru_state(self):
        """The recurrent weights in the released per-chain layout."""
        if self.mode == 'bidirectional':
            return dict(self.gru.state_dict())
        state = {}
        h = self.hidden_size
        for layer in range(self.num_layers):
            for kind in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'):
                fwd, rev = split_chains(getattr(self.gru, f'{kind}_l{layer}').detach())
                if kind == 'weight_hh':
                    fwd, rev = fwd[:, :h], rev[:, h:]
                state[f'{kind}_l{layer}'], state[f'{kind}_l{layer}_reverse'] = fwd.clone(), rev.clone()
        return state

    def load_published_state_dict(self, state):
        """Load one encoder in the released layout: ``encoder.gru.*`` (per chain),
        ``input_norm.*``, ``fc.*``; returns the keys of ``state`` that were not used."""
        gru = {k[len('encoder.gru.'):]: v for k, v in state.items() if k.startswith('encoder.gru.')}
        rest = {k: v for k, v in state.items() if not k.startswith('encoder.gru.')}
        expected = set(self.published_gru_state())
        if set(gru) != expected:
            raise KeyError(f'GRU weights in the released layout: missing {sorted(expected - set(gru))}, '
                           f'unexpected {sorted(set(gru) - expected)}')
        self.load_published_gru(gru)
        own = {k: v for k, v in rest.items() if not k.startswith('gru.')}
        missing, unexpected = self.load_state_dict({**own, **{f'gru.{k}': v for k, v in self.gru.state_dict().items()}},
                                                   strict=False)
        return missing, unexpected

    def published_state_dict(self):
        """This encoder in the released key layout (the inverse of the loader above)."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith('gru.')}
        state.update({f'encoder.gru.{k}': v for k, v in self.published_gru_state().items()})
        return state

    def features(self, x):
        """(N, C, T, V, M) -> (N, 2H) feature before ``fc``."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        out, _ = self.gru(x)
        if self.mode == 'published':
            return out[:, -1]
        h = self.hidden_size
        return torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)

    def forward(self, x):
        return self.fc(self.features(x))


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
    rate on tensor cores (:mod:`models.recurrence`); the backward stays float32 (TF32 where
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


def grouped_features(encoders, inputs, kernels='auto', fp16_operands=False):
    """``[e.features(x) for e, x in zip(encoders, inputs)]`` for published-mode encoders of one
    shape, computed together: per layer, each encoder's input projection and one recurrence that
    advances all encoders' chains frame by frame (:func:`models.recurrence.gru_recurrence`).
    The same function as the fused cuDNN call, in a form a CUDA graph replays with few gaps
    (``fp16_operands``: the layers' products take float16 operands, :mod:`models.recurrence`)."""
    first = encoders[0]
    if any(e.mode != 'published' or e.gru.weight_hh_l0.shape != first.gru.weight_hh_l0.shape for e in encoders):
        raise ValueError('grouped_features needs published-mode GRU encoders of one shape')
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
        gi = _InputProjection.apply(x, fp16_operands, amp, *(getattr(e.gru, f'weight_ih_l{layer}') for e in encoders))
        # the fused layout's columns are (gate, chain, unit): a view as (encoder, chain, T, N, gate, unit)
        gi = gi.view(count, t, n, 3, 2, hidden).permute(0, 4, 1, 2, 3, 5)
        out = gru_recurrence(gi, w_hh, b_hh, kernels, fp16_operands, b_ih=b_ih)  # (2 * encoders, T, N, H)
        if layer + 1 < first.num_layers:
            x = out.view(count, 2, t, n, hidden).permute(0, 2, 3, 1, 4)  # (encoders, T, N, chain, H)
    last = out[:, -1].view(count, 2, n, hidden).transpose(1, 2).reshape(count, n, 2 * hidden)
    return list(last.unbind(0))
