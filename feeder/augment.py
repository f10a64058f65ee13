"""Batched skeleton augmentations (docs/method.md, "Augmentations") as tensor functions, and
:class:`ViewAugment`, the pretraining views that the methods' view recipes (``VIEWS``) compose
from them: the one place an augmentation is added.

Every function takes a batch ``x`` of shape (N, C, T, V, M) (C: 2 or 3 coordinates, then perhaps
a confidence) and per-sample clip lengths, draws its random numbers per sample, and runs on
whatever device ``x`` lives on, so the same code serves data-loader workers and whole batches on
the GPU.
"""
import torch


def _rand(shape, x, generator):
    return torch.rand(shape, generator=generator, device=x.device)


def resize_window(x, start, length, frames: int):
    """Frames ``[start, start + length)`` of each sample, linearly resized to ``frames``.

    Identical to ``F.interpolate(window.view(1, C*V*M, length, 1), size=(frames, 1),
    mode='bilinear', align_corners=False)``, the published resize, but for a whole batch of
    different windows at once. Written so that TorchScript compiles it (``export.py``).
    """
    shape = [x.size(0), x.size(1), frames, x.size(3), x.size(4)]
    scale = length.to(torch.float64) / frames
    dst = torch.arange(frames, device=x.device, dtype=torch.float64)
    src = ((dst[None] + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    lo = src.floor().long()
    weight = (src - lo).to(x.dtype)[:, None, :, None, None]
    hi = torch.minimum(lo + 1, (length - 1)[:, None])
    lo, hi = (lo + start[:, None])[:, None, :, None, None], (hi + start[:, None])[:, None, :, None, None]
    return x.gather(2, lo.expand(shape)) * (1 - weight) + x.gather(2, hi.expand(shape)) * weight


def crop_lengths(num_frames, scale, min_length):
    """Published crop length rule: ``min(max(floor(n * scale), min_length), n)``."""
    length = torch.floor(num_frames.to(torch.float64) * scale).long()
    return torch.minimum(length.clamp(min=min_length), num_frames)


def random_crop_resize(x, num_frames, frames, scale=(0.1, 1.0), min_length=None, generator=None):
    """Random temporal crop with ``scale ~ U(lo, hi)`` of each clip, resized to ``frames``.

    ``min_length`` defaults to ``frames`` (64 in the published recipe). ``num_frames`` is
    clamped to the stored length ``T``.
    """
    n = num_frames.to(x.device).long().clamp(1, x.shape[2])
    lo, hi = scale
    s = _rand(len(n), x, generator).to(torch.float64) * (hi - lo) + lo
    length = crop_lengths(n, s, frames if min_length is None else min_length)
    start = torch.floor(_rand(len(n), x, generator).to(torch.float64) * (n - length + 1)).long()
    return resize_window(x, start, length, frames)


def center_crop_resize(x, num_frames, frames: int, keep: float = 0.95):
    """Test-time crop keeping the central ``keep`` of each clip: frames ``[s, n - s)`` with
    ``s = int((1 - keep) * n / 2)``, resized to ``frames``."""
    n = num_frames.to(x.device).long().clamp(1, x.shape[2])
    start = torch.floor((1 - keep) * n.to(torch.float64) / 2).long()
    return resize_window(x, start, n - 2 * start, frames)


def random_spatial(x, corrupt_joints, generator=None, shear=1.0, corruption=0.5, coordinates=None):
    """Per sample, with probability ``corruption`` (published: 1/2) joint corruption, else shear.

    Joint corruption picks ``corrupt_joints`` joints without replacement and, with probability
    1/2, zeroes them in every frame and person, else maps their points ``p -> p @ A`` with one
    random ``A ~ U(-1, 1)^{C x C}``. Shear maps every point ``p -> S @ p`` with ones on the
    diagonal of ``S`` and off-diagonal entries ``U(-shear, shear)`` (published: ``U(-1, 1)``).
    With ``coordinates`` fewer than C, the channels after them (a confidence) are carried along,
    zeroed only with a joint that corruption zeroes.
    """
    c = x.shape[1] if coordinates is None else coordinates
    points = x[:, :c]
    n, _, _, v, _ = points.shape
    corrupt = _rand(n, x, generator) < corruption
    zero = _rand(n, x, generator) < 0.5
    chosen = _rand((n, v), x, generator).argsort(dim=1)[:, :corrupt_joints]
    joint_mask = torch.zeros(n, v, dtype=torch.bool, device=x.device).scatter_(1, chosen, True)
    matrix = _rand((n, c, c), x, generator).to(x.dtype) * 2 - 1
    amount = (_rand((n, c, c), x, generator).to(x.dtype) * 2 - 1) * shear
    eye = torch.eye(c, dtype=x.dtype, device=x.device)
    amount = torch.where(eye.bool(), eye, amount)

    # out[d] = sum_c A[d, c] x[c]: shear uses S itself, corruption ``p @ A`` uses A transposed.
    whole = torch.where(corrupt[:, None, None], eye, amount)
    part = matrix.transpose(1, 2) * (~zero).to(x.dtype)[:, None, None]
    moved = torch.einsum('ndc,nctvm->ndtvm', whole, points)
    corrupted = torch.einsum('ndc,nctvm->ndtvm', part, points)
    mask = (corrupt[:, None] & joint_mask)[:, None, None, :, None]
    out = torch.where(mask, corrupted, moved)
    if c == x.shape[1]:
        return out
    zeroed = mask & zero[:, None, None, None, None]
    return torch.cat([out, x[:, c:].masked_fill(zeroed, 0)], dim=1)


def random_rotation(x, degrees, generator=None):
    """Each sample turned by its own angle ``U(-degrees, degrees)`` in the plane of the first two
    coordinates: about the vertical axis for normalised 3D clips (z up), in the image plane for 2D
    ones. A change of viewpoint, as between the cameras of a cross-view benchmark. Channels from
    ``coordinates`` on (a confidence) stay as they are."""
    return _planar(x, (_rand(len(x), x, generator).to(x.dtype) * 2 - 1) * (degrees * torch.pi / 180))


def temporal_crop(x, start, pad: int):
    """SkeletonCLR's temporal crop (Li et al. 2021, as published): each clip (N, C, T, V, M) mirrored
    by ``pad`` frames at both ends, the edge frame repeated (frames ``pad - 1 .. 0 | 0 .. T - 1 |
    T - 1 .. T - pad``), and the window of ``T`` frames from ``start`` (N,) in ``[0, 2 pad]``."""
    n, frames = len(x), x.shape[2]
    index = torch.arange(-pad, frames + pad, device=x.device)
    index = torch.where(index < 0, -index - 1, torch.where(index > frames - 1, 2 * frames - 1 - index, index))
    window = index[start.to(x.device)[:, None] + torch.arange(frames, device=x.device)]
    return x[torch.arange(n, device=x.device)[:, None], :, window].permute(0, 2, 1, 3, 4)


def padded_crop(x, num_frames, frames: int, generator=None, start=None):
    """SkeletonCLR's crop on clips of any length: each clip's ``num_frames`` valid frames resized to
    ``frames`` (the identity on clips of ``frames`` frames, such as the ST-GCN methods' 50-frame
    clips, :func:`feeder.offline.fifty_frames`), then :func:`temporal_crop` with ``frames // 6``
    frames of padding (published: 8 of 50) from ``start``, drawn uniformly in ``[0, 2 pad]``."""
    pad = frames // 6
    resized = resize_window(x, torch.zeros_like(num_frames), num_frames, frames)
    if start is None:
        start = (_rand(len(x), x, generator) * (2 * pad + 1)).long().clamp_(max=2 * pad)
    return temporal_crop(resized, start, pad)


def shear(x, matrix, coordinates=None):
    """Every point mapped ``p -> matrix @ p``, one (C, C) ``matrix`` per sample (N, C, C), C the
    ``coordinates`` (default all channels; a confidence after them is carried along)."""
    c = x.shape[1] if coordinates is None else coordinates
    out = torch.einsum('ndc,nctvm->ndtvm', matrix.to(x.dtype), x[:, :c])
    return out if c == x.shape[1] else torch.cat([out, x[:, c:]], dim=1)


def random_shear(x, amplitude, coordinates=None, generator=None, matrix=None):
    """SkeletonCLR's shear: :func:`shear` by a matrix with ones on the diagonal and off-diagonal
    entries ``U(-amplitude, amplitude)`` drawn per sample (or the given ``matrix``)."""
    if matrix is None:
        c = x.shape[1] if coordinates is None else coordinates
        eye = torch.eye(c, dtype=x.dtype, device=x.device)
        amount = (_rand((len(x), c, c), x, generator).to(x.dtype) * 2 - 1) * amplitude
        matrix = torch.where(eye.bool(), eye, amount)
    return shear(x, matrix, coordinates)


def random_flip(x, mirror, p=0.5, generator=None, flip=None):
    """With probability ``p`` per sample (or where ``flip`` (N,) is true), every joint takes its
    ``mirror`` partner's place (a permutation of the joints, :attr:`feeder.layouts.Layout.mirror`):
    AimCLR's flip, which swaps the body's sides without reflecting the coordinates."""
    index = torch.as_tensor(mirror, device=x.device)
    if flip is None:
        flip = _rand(len(x), x, generator) < p
    return torch.where(flip.to(x.device)[:, None, None, None, None], x[:, :, :, index], x)


def _turn(a, b, angle):
    """``a``, ``b`` (N, T, V, M) turned by ``angle`` (N,) radians in their plane."""
    cos, sin = angle.cos()[:, None, None, None], angle.sin()[:, None, None, None]
    return cos * a - sin * b, sin * a + cos * b


def _planar(x, angle):
    """``x`` turned by ``angle`` (N,) radians in the plane of its first two channels."""
    return torch.cat([torch.stack(_turn(x[:, 0], x[:, 1], angle), dim=1), x[:, 2:]], dim=1)


def rotate_xyz(x, angles):
    """3D ``x`` mapped by ``R_z R_y R_x`` with ``angles`` (N, 3) radians, the matrices as AimCLR's
    and MAMP's published rotations build them (``R_x = [[1, 0, 0], [0, c, s], [0, -s, c]]`` and
    likewise, each a turn by minus the angle in the right-handed sense); channels after the three
    coordinates unchanged."""
    p = [x[:, 0], x[:, 1], x[:, 2]]
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        p[i], p[j] = _turn(p[i], p[j], -angles[:, k].to(x.dtype))
    return torch.cat([torch.stack(p, dim=1), x[:, 3:]], dim=1)


def random_axis_rotation(x, main=30.0, other=1.0, coordinates=None, generator=None, angles=None):
    """AimCLR's rotation: per sample one axis, drawn uniformly, turns by ``U(0, main)`` degrees and
    the other two by ``U(0, other)``, applied about x, then y, then z (:func:`rotate_xyz`), or by
    the given ``angles`` (N, 3) in radians. A 2D clip turns in the image plane by ``U(0, main)``.
    Channels from ``coordinates`` on (a confidence) stay as they are."""
    c = x.shape[1] if coordinates is None else coordinates
    n = len(x)
    if c == 2:
        return _planar(x, _rand(n, x, generator).to(x.dtype) * (main * torch.pi / 180))
    if angles is None:
        axis = (_rand(n, x, generator) * 3).long().clamp_(max=2)
        limits = torch.where(torch.arange(3, device=x.device)[None] == axis[:, None], main, other)
        angles = _rand((n, 3), x, generator).to(x.dtype) * limits.to(x.dtype) * (torch.pi / 180)
    return rotate_xyz(x, angles)


def random_euler_rotation(x, radians=0.3, coordinates=None, generator=None):
    """MAMP's rotation: per sample three angles ``U(-radians, radians)``, the clip mapped by
    :func:`rotate_xyz`, the same in every frame. A 2D clip turns in the image plane by the first
    angle. Channels from ``coordinates`` on (a confidence) stay as they are."""
    c = x.shape[1] if coordinates is None else coordinates
    angles = (_rand((len(x), 3), x, generator).to(x.dtype) * 2 - 1) * radians
    return _planar(x, angles[:, 0]) if c == 2 else rotate_xyz(x, angles)


def random_noise(x, std=0.01, p=0.5, coordinates=None, generator=None, noise=None):
    """With probability ``p`` per sample, Gaussian noise of ``std`` on every coordinate; or the
    given ``noise`` (N, C, T, V, M), zero for a sample left as it is."""
    c = x.shape[1] if coordinates is None else coordinates
    if noise is None:
        noisy = (_rand(len(x), x, generator) < p).to(x.dtype)[:, None, None, None, None]
        noise = noisy * std * torch.randn(x[:, :c].shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.cat([x[:, :c] + noise.to(x.dtype), x[:, c:]], dim=1)


def blur_taps(sigma, kernel=15, normalise=True):
    """The temporal blur's ``kernel`` weights ``exp(-k^2 / 2 s^2)``, ``k = -kernel // 2 ..``, per
    ``sigma`` (N,): (N, kernel), divided by their sum where ``normalise``."""
    radius = kernel // 2
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    weight = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None] ** 2))
    return weight / weight.sum(dim=1, keepdim=True) if normalise else weight


def random_blur(x, kernel=15, sigma=(0.1, 2.0), p=0.5, coordinates=None, generator=None, normalise=True,
                sigmas=None, blur=None):
    """With probability ``p`` per sample (or where ``blur`` (N,) is true), a Gaussian blur along
    time of ``kernel`` taps (:func:`blur_taps`), ``s ~ U(sigma)`` (or the given ``sigmas`` (N,)).
    ``normalise``: the taps divided by their sum and the edge frames repeated past the ends, so a
    still pose stays still; without it AimCLR's published blur: the taps as they are, zeros past
    the ends, which scales a clip by up to about 5 (docs/method.md, "Published defects")."""
    c = x.shape[1] if coordinates is None else coordinates
    n, radius = len(x), kernel // 2
    if sigmas is None:
        lo, hi = sigma
        sigmas = _rand(n, x, generator).to(x.dtype) * (hi - lo) + lo
    weight = blur_taps(sigmas.to(device=x.device, dtype=x.dtype), kernel, normalise)
    points = x[:, :c]
    edges = (points[:, :, :1], points[:, :, -1:]) if normalise else (torch.zeros_like(points[:, :, :1]),) * 2
    padded = torch.cat([edges[0].expand(-1, -1, radius, -1, -1), points, edges[1].expand(-1, -1, radius, -1, -1)],
                       dim=2)
    blurred = torch.einsum('nctvmk,nk->nctvm', padded.unfold(2, 2 * radius + 1, 1), weight)
    if blur is None:
        blur = _rand(n, x, generator) < p
    return torch.cat([torch.where(blur.to(x.device)[:, None, None, None, None], blurred, points), x[:, c:]], dim=1)


def random_axis_mask(x, p=0.5, coordinates=None, generator=None, axis=None):
    """With probability ``p`` per sample, one coordinate, drawn uniformly, set to zero everywhere;
    or the given ``axis`` (N,), -1 for a sample left as it is."""
    c = x.shape[1] if coordinates is None else coordinates
    n = len(x)
    if axis is None:
        drawn = (_rand(n, x, generator) * c).long().clamp_(max=c - 1)
        axis = torch.where(_rand(n, x, generator) < p, drawn, -1)
    zero = torch.arange(c, device=x.device)[None] == axis.to(x.device)[:, None]
    return torch.cat([x[:, :c].masked_fill(zero[:, :, None, None, None], 0), x[:, c:]], dim=1)


def corrupt_count(num_joints):
    """Joints corrupted per sample: 60% of the layout's joints (15 of NTU's 25)."""
    return round(0.6 * num_joints)


class ViewAugment:
    """The pretraining views of a batch of clips: one per view recipe of ``views``, each drawn
    independently. A view recipe is a function ``recipe(augment, clips, num_frames, draws=None)``
    composed from the functions above, that reads its settings from ``augment`` (this object); a
    method declares its recipes in ``VIEWS`` (docs/method.md, "Augmentations"). Works on any
    device, so it serves data-loader workers (a batch of one clip) and whole batches on the GPU
    alike.

    The settings: ``frames`` and ``min_crop`` (the crop), ``scale`` (the crop's share), ``shear``
    (its amplitude), ``corruption`` (the probability of joint corruption instead of a shear; the
    joints corrupted: :func:`corrupt_count` of the layout's), ``rotation`` (degrees), ``coordinates``
    (how many leading channels are coordinates; a confidence after them is carried along),
    ``mirror`` (the layout's left/right joint permutation, :attr:`feeder.layouts.Layout.mirror`) and
    ``options``, the method's own settings ({name: value}) for the recipes that read them."""

    def __init__(self, num_joints, views, *, frames, min_crop, shear, corruption, rotation, scale=(0.1, 1.0),
                 coordinates=None, mirror=None, options=None):
        if not views or not all(callable(view) for view in views):
            raise ValueError(f'views: one view recipe (a function) per view, got {views!r}')
        self.views = tuple(views)
        self.frames, self.min_crop, self.scale = frames, min_crop, scale
        self.corrupt_joints = corrupt_count(num_joints)
        self.shear, self.corruption, self.rotation = shear, corruption, rotation
        self.coordinates, self.mirror, self.options = coordinates, mirror, dict(options or {})

    @property
    def names(self):
        """The views' recipes by name."""
        return tuple(view.__name__ for view in self.views)

    def __call__(self, clips, num_frames):
        return tuple(view(self, clips, num_frames) for view in self.views)

    @classmethod
    def from_args(cls, args, layout, coordinates, views, options=()):
        """The pretraining ``views`` of a run's settings ``args`` (``frames``, ``min_crop``,
        ``shear``, ``corruption``, ``rotation``, and the settings named in ``options``; a
        ``min_crop`` of ``None`` means ``frames``) for clips of ``layout`` (a
        :class:`feeder.layouts.Layout`)."""
        return cls(layout.num_joints, views, frames=args.frames, min_crop=args.min_crop or args.frames,
                   shear=args.shear, corruption=args.corruption, rotation=args.rotation, coordinates=coordinates,
                   mirror=layout.mirror, options={name: getattr(args, name, None) for name in options})
