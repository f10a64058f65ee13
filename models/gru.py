"""The published GRU encoder (docs/method.md, "The GRU encoder"), computed with full-sequence calls."""
import torch
from torch import nn

from models.encoder import Encoder, Setting, projection_head


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


class GRUEncoder(Encoder):
    """BatchNorm over the flattened (joint, xyz, person) features, a 3-layer recurrent stack,
    the last frame's output as the feature and a projection head ``fc``.

    ``mode='published'`` is the function the released checkpoints compute: each layer is two
    independent forward-in-time GRU chains over the same input (the "bidirectional" GRU of the
    published code, run one frame at a time). It is computed here as one GRU of hidden 2H whose
    recurrent matrix is block-diagonal per gate, so cuDNN (or the CPU kernel) runs all layers in
    one call; a gradient mask keeps the off-diagonal blocks exactly zero. ``mode='bidirectional'``
    is a true bidirectional GRU whose feature joins the forward direction's last state with the
    backward direction's state at frame 0.

    ``pool='mean'`` takes the mean of all frames' outputs as the feature instead (a change to the
    published method, docs/method.md): every frame then shapes the feature, not mostly the last.
    """

    SETTINGS = (
        Setting('hidden_size', int, 1024, 'GRU hidden units per chain'),
        Setting('num_layers', int, 3, 'GRU layers'),
        Setting('gru_mode', str, 'published', 'published: two forward-in-time chains per layer (the released '
                'function); bidirectional: a true bidirectional GRU', ('published', 'bidirectional')),
        Setting('gru_pool', str, 'last', "the GRU's clip feature: the last frame's output (published) or the mean "
                "over all frames' outputs", ('last', 'mean')),
    )

    @classmethod
    def build(cls, settings, layout, persons, channels, dim, mlp):
        return cls(channels * layout.num_joints * persons, hidden_size=settings['hidden_size'],
                   num_layers=settings['num_layers'], dim=dim, mlp=mlp, mode=settings['gru_mode'],
                   pool=settings['gru_pool'])

    def __init__(self, in_features, *, hidden_size, num_layers, dim, mlp, mode, pool):
        super().__init__()
        if mode not in ('published', 'bidirectional'):
            raise ValueError(f"gru mode must be 'published' or 'bidirectional', got {mode!r}")
        if pool not in ('last', 'mean'):
            raise ValueError(f"gru pool must be 'last' or 'mean', got {pool!r}")
        self.mode, self.pool, self.hidden_size, self.num_layers = mode, pool, hidden_size, num_layers
        self.feature_dim = 2 * hidden_size
        self.input_norm = nn.BatchNorm1d(in_features)
        # initialised in the released per-chain layout, as the published code does
        chains = nn.GRU(in_features, hidden_size, num_layers, batch_first=True, bidirectional=True)
        for name, param in chains.named_parameters():
            if param.dim() == 2:
                nn.init.xavier_uniform_(param)
        if mode == 'published':
            self.gru = nn.GRU(in_features, 2 * hidden_size, num_layers, batch_first=True)
            self.load_released_gru(chains.state_dict())
            mask = block_diagonal(torch.ones(3 * hidden_size, hidden_size), torch.ones(3 * hidden_size, hidden_size))
            self.register_buffer('hh_mask', mask.bool(), persistent=False)
            self._register_grad_masks()
        else:
            self.gru = chains
        self.fc = projection_head(self.feature_dim, dim, mlp)

    @property
    def fixed_zeros(self):
        """Entries of the fused recurrent matrices that are structurally zero (not parameters of
        the published model)."""
        return int((~self.hh_mask).sum()) * self.num_layers if self.mode == 'published' else 0

    def _register_grad_masks(self):
        for layer in range(self.num_layers):
            weight = getattr(self.gru, f'weight_hh_l{layer}')
            if weight.requires_grad:  # not in a frozen copy (a key encoder)
                weight.register_hook(lambda grad: grad * self.hh_mask)

    def __setstate__(self, state):
        # Tensor hooks do not survive copy.deepcopy or pickling; put the masks back.
        super().__setstate__(state)
        if self.mode == 'published':
            self._register_grad_masks()

    @torch.no_grad()
    def load_released_gru(self, state):
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

    def released_gru_state(self):
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

    def load_released_state_dict(self, state):
        """Load one encoder in the released layout: ``encoder.gru.*`` (per chain),
        ``input_norm.*``, ``fc.*``; returns the keys of ``state`` that were not used."""
        gru = {k[len('encoder.gru.'):]: v for k, v in state.items() if k.startswith('encoder.gru.')}
        rest = {k: v for k, v in state.items() if not k.startswith('encoder.gru.')}
        expected = set(self.released_gru_state())
        if set(gru) != expected:
            raise KeyError(f'GRU weights in the released layout: missing {sorted(expected - set(gru))}, '
                           f'unexpected {sorted(set(gru) - expected)}')
        self.load_released_gru(gru)
        own = {k: v for k, v in rest.items() if not k.startswith('gru.')}
        missing, unexpected = self.load_state_dict({**own, **{f'gru.{k}': v for k, v in self.gru.state_dict().items()}},
                                                   strict=False)
        return missing, unexpected

    def released_state_dict(self):
        """This encoder in the released key layout (the inverse of the loader above)."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith('gru.')}
        state.update({f'encoder.gru.{k}': v for k, v in self.released_gru_state().items()})
        return state

    def features(self, x):
        """(N, C, T, V, M) -> (N, 2H) feature before ``fc``."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        out, _ = self.gru(x)
        if self.pool == 'mean':
            return out.mean(1)
        if self.mode == 'published':
            return out[:, -1]
        h = self.hidden_size
        return torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)
