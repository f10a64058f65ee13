"""The golden values of the published implementation (docs/checkpoints.md, "Golden values") and
a model of their configuration, shared by the CPU and CUDA parity tests."""
import os

from feeder.layouts import NTU25
from models.cmd import CMD
from models.gru import GRUEncoder

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'cmd_published_tiny.pt')


def build(config, cls=CMD, **options):
    """A CMD model (or ``cls``, e.g. :class:`fast.model.FastCMD` with its ``options``) of the
    golden configuration."""
    def make_encoder():
        return GRUEncoder(150, config['hidden'], config['layers'], config['dim'], mlp=config['mlp'])
    return cls(make_encoder, NTU25, dim=config['dim'], queue_size=config['K'], momentum_key=config['m'],
               contrast_t=config['T'], topk=config['topk'], teacher_t=config['teacher_T'],
               student_t=config['student_T'], cmd_weight=config['cmd_weight'], **options)
