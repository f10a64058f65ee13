import contextlib
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_skeleton(path, frames, crlf=False, joints=25):
    """Write an NTU ``.skeleton`` file; ``frames`` is a list (per frame) of (joints, 3) arrays."""
    rng = np.random.default_rng(len(frames))
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for b, xyz in enumerate(bodies):
            lines.append(f'7205759403793{b:04d} 0 1 1 1 1 0 0.01 -0.02 2')
            lines.append(str(joints))
            for x, y, z in xyz:
                extra = rng.uniform(0, 500, size=4).tolist() + rng.uniform(-1, 1, size=4).tolist()
                lines.append(' '.join(f'{v:.7g}' for v in (x, y, z, *extra)) + ' 2')
    end = '\r\n' if crlf else '\n'
    with open(path, 'w', newline='') as f:
        f.write(end.join(lines) + end)


def random_body(rng, frames, joints=25, offset=(0.0, 0.0, 3.0), motion=0.1):
    """(frames, joints, 3) of a plausible moving body in camera space."""
    base = rng.normal(0, 0.3, size=(1, joints, 3)) + offset
    drift = np.cumsum(rng.normal(0, motion, size=(frames, 1, 3)), axis=0)
    return base + drift + rng.normal(0, 0.01, size=(frames, joints, 3))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# the published GRU (the fast path's grouped recurrence needs it), at a tiny size
TINY_PRETRAIN = ['--hidden-size', '8', '--num-layers', '2', '--gru-mode', 'published', '--frames', '8', '--min-crop',
                 '4', '--batch-size', '4', '--queue-size', '8', '--topk', '4', '--workers', '0', '--device', 'cpu',
                 '--quiet', '--seed', '3']


def tiny_flags(method=None, encoder=None):
    """The flags of ``TINY_PRETRAIN`` that a run of ``method`` with ``encoder`` reads (a flag it does
    not read is refused)."""
    from options.presets import default_encoder, reads
    read = reads(encoder or default_encoder(method), method)
    out, flags = [], list(TINY_PRETRAIN)
    while flags:
        flag = flags.pop(0)
        values = []
        while flags and not flags[0].startswith('--'):
            values.append(flags.pop(0))
        name = flag[2:].replace('-', '_')
        if name in read or name in ('workers', 'device', 'quiet'):
            out += [flag, *values]
    return out


def run_pretrain(data_root, out, *extra):
    import pretrain
    chosen = {flag: value for flag, value in zip(extra, extra[1:]) if flag in ('--method', '--encoder')}
    tiny = tiny_flags(chosen.get('--method'), chosen.get('--encoder'))
    # later flags win, so ``extra`` may override the tiny defaults (e.g. --device cuda)
    args = pretrain.get_pretrain_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--output-dir', str(out), *tiny, *extra])
    # pretrain.main sets the process-wide TF32 switches on CUDA; later tests must not inherit them
    with tf32_switches():
        return pretrain.main(args)


@contextlib.contextmanager
def tf32_switches(enabled=None):
    """PyTorch's process-wide TF32 switches (cuBLAS and cuDNN) restored afterwards; with
    ``enabled``, both set to it meanwhile."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope='session')
def data_root(tmp_path_factory):
    """A small synthetic dataset in the community layout (4 classes, 3 subjects, 2 cameras)."""
    from feeder.raw import prepare as prep
    from feeder.raw.synthetic import generate
    root = tmp_path_factory.mktemp('synthetic')
    generate(str(root / 'raw'), classes=4, subjects=3, cameras=2, replications=1, seed=0)
    prep.prepare(prep.get_args_parser().parse_args(['--dataset', 'synthetic', '--raw-dir', str(root / 'raw'),
                                                    '--out-dir', str(root / 'data'), '--workers', '0', '--quiet']))
    return root / 'data'


def openpose_data(root):
    """The synthetic performances (4 classes, 3 subjects, 2 cameras) as OpenPose COCO-17 detections
    (2D, untracked) in ``root/raw``, prepared into ``root/data``; returns that folder."""
    from feeder.raw import prepare as prep
    from feeder.raw.synthetic import write_openpose
    write_openpose(str(root / 'raw'), classes=4, subjects=3, cameras=2, replications=1)
    assert prep.main(['--dataset', 'custom', '--annotations', str(root / 'raw'), '--layout', 'coco17', '--out-dir',
                      str(root / 'data'), '--workers', '0', '--quiet']) == 0
    return root / 'data'


@pytest.fixture(scope='session')
def tiny_checkpoint(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp('pretrained')
    run_pretrain(data_root, out, '--epochs', '1')
    return out / 'checkpoint.pth'


def gru(hidden=8, layers=2, dim=16, mode='published', pool='last', mlp=True, inputs=150):
    """A small GRU encoder for the tests (the published chains and last frame unless told)."""
    from models.gru import GRUEncoder
    return GRUEncoder(inputs, hidden_size=hidden, num_layers=layers, dim=dim, mlp=mlp, mode=mode, pool=pool)


def transformer(width=16, depth=2, heads=2, mlp_ratio=4, patch=4, dim=8, mlp=True, joints=25, channels=3):
    """A small transformer encoder for the tests."""
    from models.transformer import TransformerEncoder
    return TransformerEncoder(joints, channels, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio,
                              patch=patch, dim=dim, mlp=mlp)


def with_defaults(cls, make_encoder, **given):
    """A model of method class ``cls`` (or a faster subclass of one, with its switches in
    ``given``) built as ``pretrain.py`` builds it from what the method's published NTU-60 recipe
    resolves (``options.presets.recipe``, a 300-epoch run) changed by ``given``: the model of a
    published run, at the sizes a test gives."""
    import argparse

    from feeder.info import dataset_info
    from models import METHODS
    from options.presets import recipe
    name = next(name for name, method in METHODS.items() if method in cls.__mro__)
    values = dict(recipe('ntu60', method=name)[0], epochs=300)
    switches = {k: given.pop(k) for k in list(given) if k not in values}
    values.update(given)
    values.update({k: v for k, (v, _) in cls.resolve(values).items()})
    return cls.build(make_encoder, argparse.Namespace(**values), dataset_info('ntu60'), **switches)


def augment(views, frames=64, shear=1.0, corruption=0.5, rotation=0.0, **options):
    """The view maker of CMD's recipe (its shear, corruption and rotation, crops of at least
    ``frames``, unless told) for 25 joints."""
    from feeder.augment import ViewAugment
    options.setdefault('min_crop', frames)
    return ViewAugment(25, views, frames=frames, shear=shear, corruption=corruption, rotation=rotation, **options)
