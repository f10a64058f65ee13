"""MAMP (Mao et al., ICCV 2023): masked motion prediction on a transformer (docs/method.md,
"Methods"). Tokens are (joint, temporal patch) pairs; the tokens that move most are masked most
often; the encoder sees the kept tenth alone, and a light decoder predicts the per-frame motion of
the masked ones."""
import torch
import torch.nn.functional as F
from torch import nn

from feeder.info import MAX_FRAMES
from feeder.modalities import to_modality
from models.encoder import Setting, StreamEncoder
from models.losses import masked_mse
from models.transformer import Block, init_weights


def patchify(x, patch):
    """Clips (B, C, T, V), T a multiple of ``patch``, as the values of their tokens
    (B, T / patch, V, patch * C): a token holds its joint's ``patch`` frames, frame after frame."""
    b, c, t, v = x.shape
    return x.view(b, c, t // patch, patch, v).permute(0, 2, 4, 3, 1).reshape(b, t // patch, v, patch * c)


def motion_prior(patches):
    """Each token's motion (B, T', V): the mean absolute difference of its values from the token
    of the same joint one patch before; the first patch takes the second's."""
    motion = (patches[:, 1:] - patches[:, :-1]).abs().mean(dim=-1)
    return torch.cat([motion[:, :1], motion], dim=1)


def keep_tokens(motion, keep, tau, generator=None):
    """The ``keep`` tokens kept per sample (B, keep), of ``motion`` (B, L): with ``pi`` the softmax
    of ``motion / (tau * max motion)`` over a sample's tokens, the tokens of the lowest
    ``log pi + Gumbel noise`` are kept, so the masked ones are a draw without replacement in
    proportion to ``pi``: moving tokens are masked more often. ``tau <= 0``: uniform random
    masking (MAE)."""
    noise = torch.rand(motion.shape, generator=generator, device=motion.device).clamp_(min=1e-20)
    gumbel = -torch.log((-torch.log(noise)).clamp_(min=1e-20))
    if tau > 0:
        scale = tau * motion.amax(dim=1, keepdim=True).clamp(min=torch.finfo(motion.dtype).tiny)
        gumbel = gumbel + F.log_softmax(motion / scale, dim=1)
    return gumbel.argsort(dim=1)[:, :keep]


def motion_target(x, patch):
    """What MAMP predicts for clips (B, C, T, V): the per-frame motion ``x[t + 1] - x[t]`` (zero at
    the last frame), patchified, each token normalised to zero mean and unit variance over its
    values (``torch.var``'s unbiased variance plus 1e-6, as MAE normalises its pixels)."""
    motion = torch.cat([x[:, :, 1:] - x[:, :, :-1], torch.zeros_like(x[:, :, :1])], dim=2)
    tokens = patchify(motion, patch)
    mean, var = tokens.mean(dim=-1, keepdim=True), tokens.var(dim=-1, keepdim=True)
    return (tokens - mean) / (var + 1e-6).sqrt()


class Decoder(nn.Module):
    """The kept tokens' latents embedded, mask tokens in the other places, position embeddings of
    its own, ``depth`` blocks, a LayerNorm and a linear map to each token's ``out`` values."""

    def __init__(self, width, out, num_joints, patch, depth, heads, mlp_ratio):
        super().__init__()
        self.embed = nn.Linear(width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.spatial = nn.Parameter(torch.zeros(1, 1, num_joints, width))
        self.temporal = nn.Parameter(torch.zeros(1, -(-MAX_FRAMES // patch), 1, width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, out)
        self.apply(init_weights)
        for param in (self.mask_token, self.spatial, self.temporal):
            nn.init.trunc_normal_(param, std=0.02)

    def forward(self, latent, kept, patches, joints):
        """Predictions (B, ``patches`` * ``joints``, out) from the latents (B, K, width) of the
        tokens at positions ``kept`` (B, K)."""
        b, _, width = latent.shape
        tokens = self.mask_token.expand(b, patches * joints, width)
        tokens = tokens.scatter(1, kept[..., None].expand(-1, -1, width), self.embed(latent))
        tokens = tokens + (self.spatial + self.temporal[:, :patches]).flatten(1, 2)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens))


class MAMP(nn.Module):
    """Per modality a transformer encoder (``make_encoder()``, one that exposes ``tokens`` and
    ``encode``: :class:`models.transformer.TransformerEncoder`) and a decoder; the loss is the sum
    over modalities of :func:`models.losses.masked_mse` between the decoder's predictions and
    :func:`motion_target` of that modality's input. Each person is a sample of its own; persons
    absent from a clip (all zero) carry no loss. A method of ``models.METHODS``."""

    VIEWS = ('mamp',)
    SETTINGS = (
        Setting('mask_ratio', float, 0.9, 'mamp: the share of tokens masked'),
        Setting('mask_tau', float, 0.8, "mamp: the masking's temperature over the tokens' motion (0: random "
                                        'masking, as MAE)'),
        Setting('decoder_depth', int, 3, "mamp: the decoder's blocks"),
    )

    def __init__(self, make_encoder, layout, modalities=('joint',), mask_ratio=0.9, mask_tau=0.8, decoder_depth=3,
                 coordinates=None):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f'--mask-ratio {mask_ratio}: expected a share between 0 and 1')
        self.layout, self.modalities, self.coordinates = layout, tuple(modalities), coordinates
        self.mask_ratio, self.mask_tau = mask_ratio, mask_tau
        self.encoder = nn.ModuleDict({m: make_encoder() for m in self.modalities})
        first = self.encoder[self.modalities[0]]
        if not hasattr(first, 'tokens'):
            raise ValueError(f'--method mamp masks tokens: it needs --encoder transformer, not {type(first).__name__}')
        for encoder in self.encoder.values():  # no projection: the features are the encoder's own
            encoder.fc.requires_grad_(False)
        values = (coordinates or first.channels) * first.patch  # a token's coordinates, not its confidence
        self.decoder = nn.ModuleDict({m: Decoder(first.feature_dim, values, layout.num_joints, first.patch,
                                                 decoder_depth, first.heads, first.mlp_ratio) for m in self.modalities})

    @classmethod
    def build(cls, make_encoder, args, dataset):
        return cls(make_encoder, dataset.layout, args.modalities, args.mask_ratio, args.mask_tau, args.decoder_depth,
                   dataset.coordinates)

    def encoders(self):
        return {m: StreamEncoder(e, m, self.layout, self.coordinates) for m, e in self.encoder.items()}

    def stream_loss(self, modality, view):
        encoder = self.encoder[modality]
        x = to_modality(view, modality, self.layout, self.coordinates)
        tokens, _ = encoder.tokens(x)
        b, patches, joints, width = tokens.shape
        # the clips as the encoder cut them: persons as samples, the last frame repeated to whole patches
        frames = x.permute(0, 4, 1, 2, 3).flatten(0, 1)[:, :self.coordinates]
        frames = torch.cat([frames, frames[:, :, -1:].expand(-1, -1, patches * encoder.patch - frames.shape[2], -1)],
                           dim=2)
        keep = max(1, round(patches * joints * (1 - self.mask_ratio)))
        kept = keep_tokens(motion_prior(patchify(frames, encoder.patch)).flatten(1), keep, self.mask_tau)
        latent = encoder.encode(tokens.flatten(1, 2).gather(1, kept[..., None].expand(-1, -1, width)))
        prediction = self.decoder[modality](latent, kept, patches, joints)
        masked = torch.ones(b, patches * joints, device=x.device).scatter_(1, kept, 0.0)
        present = frames.flatten(1).ne(0).any(dim=1)
        return masked_mse(prediction, motion_target(frames, encoder.patch).flatten(1, 2), masked * present[:, None])

    def forward(self, views):
        (view,) = views
        losses = {f'mse_{m}': self.stream_loss(m, view) for m in self.modalities}
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}
