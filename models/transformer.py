"""A plain transformer over (joint, temporal patch) tokens, as MAMP uses it (Mao et al., ICCV 2023;
docs/method.md, "The transformer encoder"), for any layout and any number of channels."""
import torch
import torch.nn.functional as F
from torch import nn

from feeder.info import MAX_FRAMES
from models.encoder import Encoder, Setting, projection_head


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        if width % heads:
            raise ValueError(f'--width {width} is not a multiple of --heads {heads}')
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, length, width))


def drop_path(x, rate, training):
    """Stochastic depth (Huang et al., 2016): in training, each sample's residual branch ``x``
    (B, ...) is dropped with probability ``rate`` and kept ones are scaled by ``1 / (1 - rate)``."""
    if not training or rate == 0:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class Block(nn.Module):
    """Pre-LN: x + attention(LN(x)), then x + MLP(LN(x)) with a GELU; each branch dropped per
    sample with probability ``drop_path`` in training (0 unless fine-tuning sets it)."""

    def __init__(self, width, heads, mlp_ratio):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width * mlp_ratio), nn.GELU(), nn.Linear(width * mlp_ratio, width))
        self.drop_path = 0.0

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


def init_weights(module):
    """MAMP's published initialisation: linear layers Xavier-uniform with zero bias, LayerNorms the
    identity (the patch embedding keeps PyTorch's default)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TransformerEncoder(Encoder):
    """Clips (N, C, T, V, M), persons folded into the batch, cut into tokens of ``patch`` frames of
    one joint (a linear embedding of its C x ``patch`` numbers), plus learned spatial and temporal
    position embeddings; ``depth`` pre-LN blocks of full space-time attention; a final LayerNorm.
    The feature is the mean over tokens, then over persons. A clip whose length is not a multiple
    of ``patch`` is padded with its last frame. Methods that mask tokens use the halves
    :meth:`tokens` and :meth:`encode`."""

    SETTINGS = (
        Setting('width', int, 256, "the transformer's token width"),
        Setting('depth', int, 8, 'transformer blocks'),
        Setting('heads', int, 8, 'attention heads per block'),
        Setting('mlp_ratio', int, 4, "the blocks' MLP width, in multiples of --width"),
        Setting('patch', int, 4, 'frames per token of the transformer'),
    )

    # on small data: a quarter of the published width, two blocks, and the optimiser transformers train
    # with (chosen on the validation benchmarks, benchmarks/RESULTS.md "Small-data presets")
    SMALL_RECIPE = dict(width=64, depth=2, heads=4, mlp_ratio=2, optimizer='adamw', lr=1e-3, weight_decay=0.05,
                        warmup_epochs=6, cos=True, min_lr=0.0, epochs=60)

    @classmethod
    def build(cls, settings, layout, persons, channels, dim, mlp):
        return cls(layout.num_joints, channels, width=settings['width'], depth=settings['depth'],
                   heads=settings['heads'], mlp_ratio=settings['mlp_ratio'], patch=settings['patch'], dim=dim, mlp=mlp)

    def __init__(self, num_joints, channels, *, width, depth, heads, mlp_ratio, patch, dim, mlp):
        super().__init__()
        self.channels, self.patch, self.heads, self.mlp_ratio = channels, patch, heads, mlp_ratio
        self.embed = nn.Conv2d(channels, width, kernel_size=(patch, 1), stride=(patch, 1))
        self.spatial = nn.Parameter(torch.zeros(1, 1, num_joints, width))
        self.temporal = nn.Parameter(torch.zeros(1, -(-MAX_FRAMES // patch), 1, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.feature_dim = width
        self.apply(init_weights)
        nn.init.trunc_normal_(self.spatial, std=0.02)
        nn.init.trunc_normal_(self.temporal, std=0.02)
        self.fc = projection_head(width, dim, mlp)

    def tokens(self, x):
        """The embedded tokens (N * M, T / ``patch``, V, width) of clips ``x`` (N, C, T, V, M), with
        their positions added, and M."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        pad = -t % self.patch
        if pad:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1)], dim=2)
        x = self.embed(x).permute(0, 2, 3, 1)
        if x.shape[1] > self.temporal.shape[1]:
            raise ValueError(f'{t} frames: the transformer has temporal positions for {MAX_FRAMES}')
        return x + self.spatial + self.temporal[:, :x.shape[1]], m

    def encode(self, tokens):
        """The blocks and the final norm over a sequence of tokens (B, L, width)."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def released_name(self, name):
        # MAMP's model/transformer.py names
        for ours, theirs in (('embed.', 'joints_embed.proj.'), ('spatial', 'pos_embed'), ('temporal', 'temp_embed')):
            if name.startswith(ours):
                return theirs + name[len(ours):]
        return name.replace('.mlp.0.', '.mlp.fc1.').replace('.mlp.2.', '.mlp.fc2.')

    def load_released_state_dict(self, state):
        """As :meth:`models.encoder.Encoder.load_released_state_dict`; the published temporal positions
        (as many as its clips have patches: 30 of 120 frames) fill the first of ours."""
        state = dict(state)
        if 'temp_embed' in state:
            temporal = self.temporal.detach().clone()
            temporal[:, :state['temp_embed'].shape[1]] = state['temp_embed']
            state['temp_embed'] = temporal
        return super().load_released_state_dict(state)

    @property
    def decay_layers(self):
        """The layers of layer-wise lr decay: the embeddings (0), the blocks (1 to ``depth``), and
        the final norm with what follows (``depth + 1``), as MAE counts them."""
        return len(self.blocks) + 1

    def layer_of(self, name):
        """The layer (see :attr:`decay_layers`) of the parameter called ``name``."""
        if name.split('.')[0] in ('embed', 'spatial', 'temporal'):
            return 0
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1
        return self.decay_layers

    def set_drop_path(self, rate):
        """Stochastic depth for fine-tuning: block b of the L drops its branches with probability
        ``rate * b / (L - 1)``, as MAE and MAMP fine-tune."""
        for b, block in enumerate(self.blocks):
            block.drop_path = rate * b / max(len(self.blocks) - 1, 1)

    def token_grid(self, x):
        """The encoded tokens of clips ``x`` (N, C, T, V, M) as (N, M, T / ``patch``, V, width)."""
        tokens, m = self.tokens(x)
        n, patches, joints, width = tokens.shape
        return self.encode(tokens.flatten(1, 2)).view(n // m, m, patches, joints, width)

    def features(self, x):
        return self.token_grid(x).mean(dim=(1, 2, 3))
