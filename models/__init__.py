"""Encoders and the CMD model."""
from dataclasses import dataclass, fields

from models.cmd import CMD
from models.gru import GRUEncoder
from models.stgcn import STGCNEncoder


@dataclass(frozen=True)
class EncoderConfig:
    """What an encoder is: its architecture, independent of the data it reads."""
    encoder: str = 'gru'
    hidden_size: int = 1024
    num_layers: int = 3
    mlp: bool = True
    dim: int = 128
    gru_mode: str = 'published'
    gru_pool: str = 'last'

    @classmethod
    def from_dict(cls, values):
        """The config from any mapping holding (at least) its fields, e.g. ``vars(args)``."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def build_encoder(config, layout, persons, channels=3):
    """One encoder of ``config`` for clips of ``layout`` skeletons, ``persons`` bodies and
    ``channels`` coordinates per joint."""
    if config.encoder == 'gru':
        return GRUEncoder(channels * layout.num_joints * persons, config.hidden_size, config.num_layers,
                          config.dim, mlp=config.mlp, mode=config.gru_mode, pool=config.gru_pool)
    if config.encoder == 'stgcn':
        return STGCNEncoder(layout, in_channels=channels, dim=config.dim, mlp=config.mlp)
    raise ValueError(f'unknown encoder {config.encoder!r}')


def build_cmd(args, dataset, cls=CMD, **extra):
    """The CMD model of the parsed pretraining ``args`` for ``dataset`` (a
    :class:`feeder.info.DatasetInfo`); ``cls`` and ``extra`` let the fast path (:mod:`fast`) build
    its subclass."""
    config = EncoderConfig.from_dict(vars(args))
    return cls(lambda: build_encoder(config, dataset.layout, dataset.persons, len(dataset.channels)), dataset.layout,
               args.modalities, dim=args.dim, queue_size=args.queue_size, momentum_key=args.momentum_key,
               contrast_t=args.contrast_t, topk=args.topk, teacher_t=args.teacher_t, student_t=args.student_t,
               cmd_weight=args.cmd_weight, coordinates=dataset.coordinates, **extra)
