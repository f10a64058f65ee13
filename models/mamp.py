"""MAMP (Mao et al., ICCV 2023): masked motion prediction on a transformer (docs/method.md,
"Methods"). Tokens are (joint, temporal patch) pairs; the tokens that move most are masked most
often; the encoder sees the kept tenth alone, and a light decoder predicts the per-frame motion of
the masked ones."""
import torch
import torch.nn.functional as F
from torch import nn

from feeder.augment import random_crop_resize, random_euler_rotation
from feeder.info import MAX_FRAMES
from feeder.modalities import to_modality
from models.encoder import FIX_DEFECTS, Setting, StreamEncoder
from models.losses import masked_mse
from models.method import Method
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


def masking_key(motion, tau, noise):
    """The published masking's sort key of each token (B, L) of ``motion`` (B, L) given uniform draws
    ``noise`` (B, L): with ``pi`` the softmax of ``motion / (tau * max motion + 1e-10)`` over a
    sample's tokens, ``log pi + g``, ``g = -log(-log(noise + 1e-10) + 1e-10)`` Gumbel noise; with
    ``tau <= 0`` (random masking, MAE) the draws themselves."""
    if tau <= 0:
        return noise
    scaled = motion / (motion.amax(dim=1, keepdim=True) * tau + 1e-10)
    return torch.log(F.softmax(scaled, dim=1)) - torch.log(-torch.log(noise + 1e-10) + 1e-10)


def keep_tokens(motion, keep, tau, generator=None, noise=None):
    """The ``keep`` tokens kept per sample (B, keep), of ``motion`` (B, L): those of the lowest
    :func:`masking_key`, so the masked ones are a draw without replacement in proportion to the
    softmax of the motion and moving tokens are masked more often. ``noise``: the uniform draws
    (B, L), drawn where not given."""
    if noise is None:
        noise = torch.rand(motion.shape, generator=generator, device=motion.device, dtype=motion.dtype)
    return masking_key(motion, tau, noise).argsort(dim=1)[:, :keep]


def kept_count(tokens, mask_ratio, rounded=False):
    """How many of a sample's ``tokens`` the encoder sees: ``int(tokens * (1 - mask_ratio))`` as
    published (74 of 750 at 0.9: the float product falls just short of 75), or with ``rounded`` the
    nearest whole number; at least one."""
    share = tokens * (1 - mask_ratio)
    return max(1, round(share) if rounded else int(share))


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

    def released_name(self, name):
        # MAMP's model_mamp/transformer.py names
        for ours, theirs in (('embed.', 'decoder_embed.'), ('spatial', 'decoder_pos_embed'),
                             ('temporal', 'decoder_temp_embed'), ('blocks.', 'decoder_blocks.'),
                             ('norm.', 'decoder_norm.'), ('head.', 'decoder_pred.')):
            if name.startswith(ours):
                name = theirs + name[len(ours):]
                break
        return name.replace('.mlp.0.', '.mlp.fc1.').replace('.mlp.2.', '.mlp.fc2.')

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


def mamp(augment, clips, num_frames, draws=None):
    """MAMP's view recipe: a random crop of U(0.5, 1) of each clip (at least ``min_crop`` frames),
    resized to ``frames``, then a turn of U(-0.3, 0.3) radians about each axis
    (:func:`feeder.augment.random_euler_rotation`)."""
    x = random_crop_resize(clips, num_frames, augment.frames, (0.5, 1.0), augment.min_crop)
    return random_euler_rotation(x, coordinates=augment.coordinates)


class FinetuneHead(nn.Module):
    """MAMP's fine-tuning head (its model/transformer.py, ActionHeadFinetune): dropout on the encoder's
    token grid (N, M, T', V, width), the mean over time, the joints' features side by side (V x
    width), the mean over persons, then Linear(V x width, ``hidden``), BatchNorm, ReLU and
    Linear(``hidden``, classes)."""

    def __init__(self, width, joints, classes, hidden=2048, dropout=0.3):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc1, self.bn, self.fc2 = nn.Linear(joints * width, hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, classes)
        for fc in (self.fc1, self.fc2):
            init_weights(fc)

    def forward(self, grid):
        x = self.dropout(grid).mean(dim=2).flatten(2).mean(dim=1)
        return self.fc2(F.relu(self.bn(self.fc1(x))))


class MAMP(Method):
    """Per modality a transformer encoder (``make_encoder()``, one that exposes ``tokens`` and
    ``encode``: :class:`models.transformer.TransformerEncoder`) and a decoder; the loss is the sum
    over modalities of :func:`models.losses.masked_mse` between the decoder's predictions and
    :func:`motion_target` of that modality's input. Each person is a sample of its own. A method of
    ``models.METHODS``.

    As published, persons absent from a clip (all zero) are samples too, and the encoder sees
    :func:`kept_count` tokens rounded down; ``fix_defects``: absent persons carry no loss and the
    count is rounded to the nearest (docs/method.md, "Published defects")."""

    VIEWS = (mamp,)
    # the joint stream on the transformer, 120 frames cropped to at least 64, AdamW at an absolute lr of
    # 1e-3 (4 GPUs x 32 clips) warmed up over 20 epochs, then cosine to 5e-4
    ENCODER = 'transformer'
    RECIPE = dict(modalities=['joint'], frames=120, min_crop=64, epochs=400, batch_size=128, optimizer='adamw',
                  lr=1e-3, min_lr=5e-4, warmup_epochs=20, cos=True, weight_decay=0.05)
    DATASET_RECIPES = {'ntu120': dict(mask_tau=0.75, decoder_depth=5), 'pku1': dict(decoder_depth=5),
                       'pku2': dict(decoder_depth=5)}
    # on small data (chosen on the validation benchmarks, benchmarks/RESULTS.md "Small-data presets")
    SMALL_RECIPE = dict(modalities=['joint'], width=128, depth=4, heads=4, mlp_ratio=4, decoder_depth=2, batch_size=32,
                        epochs=60, optimizer='adamw', lr=1e-3, min_lr=1e-5, warmup_epochs=10, cos=True,
                        weight_decay=0.05)
    # main_linprobe.py and main_finetune.py with their configs (config/*/linprobe_t120_layer8.yaml,
    # finetune_t120_layer8_decay.yaml) and scripts (lr 3e-4, min_lr 1e-5): the training clips turned
    # as in pretraining; the probe a BatchNorm (eps 1e-6) and a linear head by SGD, the lr absolute for
    # a batch of 256 (2 GPUs x 128), cosine at every step; fine-tuning with MAMP's head
    # (:class:`FinetuneHead`), AdamW (betas 0.9, 0.999), layer decay 0.8, drop path 0.3 and label
    # smoothing 0.1, the lr absolute for a batch of 48 (2 x 24)
    PROTOCOLS = {
        'linear': dict(batchnorm=True, optimizer='sgd', lr=0.1, momentum=0.9, weight_decay=0.0, epochs=100, cos=True,
                       min_lr=0.0, warmup_epochs=0, schedule=[], batch_size=256, rotate_train=0.3),
        'finetune': dict(head='mamp', optimizer='adamw', betas=[0.9, 0.999], lr=3e-4, min_lr=1e-5, warmup_epochs=5,
                         cos=True, schedule=[], epochs=100, batch_size=48, weight_decay=0.05, layer_decay=0.8,
                         drop_path=0.3, label_smoothing=0.1, rotate_train=0.3),
    }
    PUBLISHED = 'maoyunyao/MAMP@09e6252'
    SETTINGS = (
        Setting('mask_ratio', float, 0.9, 'mamp: the share of tokens masked'),
        Setting('mask_tau', float, 0.8, "mamp: the masking's temperature over the tokens' motion (0: random "
                                        'masking, as MAE)'),
        Setting('decoder_depth', int, 3, "mamp: the decoder's blocks"),
        FIX_DEFECTS,
    )

    def __init__(self, make_encoder, layout, *, modalities, mask_ratio, mask_tau, decoder_depth, fix_defects,
                 coordinates=None):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f'--mask-ratio {mask_ratio}: expected a share between 0 and 1')
        self.layout, self.modalities, self.coordinates = layout, tuple(modalities), coordinates
        self.mask_ratio, self.mask_tau, self.fix_defects = mask_ratio, mask_tau, fix_defects
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
        return cls(make_encoder, dataset.layout, modalities=args.modalities, mask_ratio=args.mask_ratio,
                   mask_tau=args.mask_tau, decoder_depth=args.decoder_depth, fix_defects=bool(args.fix_defects),
                   coordinates=dataset.coordinates)

    def encoders(self):
        return {m: StreamEncoder(e, m, self.layout, self.coordinates) for m, e in self.encoder.items()}

    def released_name(self, name):
        """The name of our entry ``name`` (``encoder.<modality>.*``, ``decoder.<modality>.*``) in the
        published pretraining model of that modality (docs/checkpoints.md, "Published layouts")."""
        part, modality, rest = name.split('.', 2)
        return getattr(self, part)[modality].released_name(rest)

    def released_state_dict(self, modality='joint'):
        """The published pretraining model of ``modality``'s stream (MAMP trains one per modality)."""
        return {self.released_name(k): v for k, v in self.state_dict().items()
                if k.split('.')[1] == modality and not k.startswith(f'encoder.{modality}.fc.')}

    @torch.no_grad()
    def load_released_state_dict(self, state, modality='joint'):
        """Load the published pretraining model of ``modality``'s stream (:meth:`released_state_dict`)."""
        state = dict(state)
        for key in ('temp_embed', 'decoder_temp_embed'):  # positions of the published frames: the first of ours
            ours = self.encoder[modality].temporal if key == 'temp_embed' else self.decoder[modality].temporal
            if key in state:
                full = ours.detach().clone()
                full[:, :state[key].shape[1]] = state[key]
                state[key] = full
        names = {self.released_name(k): k for k in self.state_dict() if k.split('.')[1] == modality}
        unknown = sorted(set(state) - set(names))
        if unknown:
            raise KeyError(f'MAMP layout: unexpected {unknown}')
        missing, _ = self.load_state_dict({names[k]: v for k, v in state.items()}, strict=False)
        missing = [k for k in missing if k.split('.')[1] == modality and not k.startswith(f'encoder.{modality}.fc.')]
        if missing:
            raise KeyError(f'MAMP layout: missing {missing}')

    def predict(self, modality, view, noise=None):
        """One modality's masked prediction: the decoder's predictions and the targets (B, L, values),
        persons as samples, and each token's loss weight (B, L): 1 where masked, 0 where kept (and,
        with ``fix_defects``, for absent persons). ``noise``: the masking's uniform draws (B, L)."""
        encoder = self.encoder[modality]
        x = to_modality(view, modality, self.layout, self.coordinates)
        tokens, _ = encoder.tokens(x)
        b, patches, joints, width = tokens.shape
        # the clips as the encoder cut them: persons as samples, the last frame repeated to whole patches
        frames = x.permute(0, 4, 1, 2, 3).flatten(0, 1)[:, :self.coordinates]
        frames = torch.cat([frames, frames[:, :, -1:].expand(-1, -1, patches * encoder.patch - frames.shape[2], -1)],
                           dim=2)
        keep = kept_count(patches * joints, self.mask_ratio, rounded=self.fix_defects)
        kept = keep_tokens(motion_prior(patchify(frames, encoder.patch)).flatten(1), keep, self.mask_tau, noise=noise)
        latent = encoder.encode(tokens.flatten(1, 2).gather(1, kept[..., None].expand(-1, -1, width)))
        prediction = self.decoder[modality](latent, kept, patches, joints)
        weight = torch.ones(b, patches * joints, device=x.device, dtype=prediction.dtype).scatter_(1, kept, 0.0)
        if self.fix_defects:
            weight = weight * frames.flatten(1).ne(0).any(dim=1)[:, None]
        return prediction, motion_target(frames, encoder.patch).flatten(1, 2), weight

    def stream_loss(self, modality, view, noise=None):
        return masked_mse(*self.predict(modality, view, noise))

    def forward(self, views):
        (view,) = views
        losses = {f'mse_{m}': self.stream_loss(m, view) for m in self.modalities}
        return sum(losses.values()), {k: v.detach() for k, v in losses.items()}
