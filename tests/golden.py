"""The golden values of the published implementation (docs/checkpoints.md, "Golden values") and a
model of their configuration, shared by the CPU and CUDA parity tests."""
import os

import torch

from feeder.layouts import NTU25
from feeder.modalities import MODALITIES
from models.cmd import CMD
from models.gru import GRUEncoder

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'cmd_published_tiny.pt')


def build(config, cls=CMD, **options):
    """A CMD model (or ``cls``, e.g. :class:`fast.model.FastCMD` with its ``options``) of the
    golden configuration."""
    def make_encoder():
        return GRUEncoder(150, hidden_size=config['hidden'], num_layers=config['layers'], dim=config['dim'],
                          mlp=config['mlp'], mode='published', pool='last')
    return cls(make_encoder, NTU25, modalities=MODALITIES, dim=config['dim'], queue_size=config['K'],
               momentum_key=config['m'], contrast_t=config['T'], topk=config['topk'], teacher_t=config['teacher_T'],
               student_t=config['student_T'], cmd_weight=config['cmd_weight'], **options)


def load_golden(method):
    """The golden values of ``method``'s published code (tests/data/<method>_published_tiny.pt)."""
    return torch.load(os.path.join(os.path.dirname(__file__), 'data', f'{method}_published_tiny.pt'), weights_only=True)


def assert_golden(actual, expected, what):
    """The golden files' tolerance: a floating tensor within ``1e-10 * max(1, max |expected|)`` of the
    expected one (compared in float64), any other exactly."""
    actual = torch.as_tensor(actual).detach()
    assert actual.shape == expected.shape, f'{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}'
    if not expected.is_floating_point():
        assert torch.equal(actual.to(expected.dtype), expected), what
        return
    error = float((actual.double() - expected).abs().max()) if expected.numel() else 0.0
    bound = 1e-10 * max(1.0, float(expected.abs().max()) if expected.numel() else 0.0)
    assert error <= bound, f'{what}: off by {error:.3g} (tolerance {bound:.3g})'
