"""Encoders and the CMD model. ``ENCODERS`` is the registry: its names are the ``--encoder``
choices, and a new encoder is one module of its own plus one entry here (docs/method.md,
"Encoders")."""
from dataclasses import asdict, dataclass

from models.cmd import CMD, CMDConfig
from models.gru import GRUEncoder
from models.stgcn import STGCNEncoder

ENCODERS = {'gru': GRUEncoder, 'stgcn': STGCNEncoder}
# What every encoder takes, and then each encoder's own settings.
COMMON_SETTINGS = ('encoder', 'dim', 'mlp')
ENCODER_SETTINGS = COMMON_SETTINGS + tuple(dict.fromkeys(s for e in ENCODERS.values() for s in e.SETTINGS))


@dataclass(frozen=True)
class EncoderConfig:
    """What an encoder is: its architecture, independent of the data it reads. ``settings``:
    the (name, value) pairs of the encoder's own ``SETTINGS``."""
    encoder: str
    dim: int
    mlp: bool
    settings: tuple = ()

    @classmethod
    def from_dict(cls, values):
        """The config from any mapping holding (at least) its settings, e.g. ``vars(args)``."""
        name = values.get('encoder')
        if name not in ENCODERS:
            raise ValueError(f'unknown encoder {name!r}; known: {", ".join(ENCODERS)}')
        needed = ('dim', 'mlp') + ENCODERS[name].SETTINGS
        missing = [key for key in needed if values.get(key) is None]
        if missing:
            raise ValueError(f'encoder {name}: no value for {", ".join(missing)}')
        return cls(name, values['dim'], values['mlp'], tuple((key, values[key]) for key in ENCODERS[name].SETTINGS))


def build_encoder(config, layout, persons, channels=3):
    """One encoder of ``config`` for clips of ``layout`` skeletons, ``persons`` bodies and
    ``channels`` coordinates per joint."""
    return ENCODERS[config.encoder].build(dict(config.settings), layout, persons, channels, config.dim, config.mlp)


def build_cmd(args, dataset, cls=CMD, **extra):
    """The CMD model of the parsed pretraining ``args`` for ``dataset`` (a
    :class:`feeder.info.DatasetInfo`); ``cls`` and ``extra`` let the fast path (:mod:`fast`) build
    its subclass."""
    config = EncoderConfig.from_dict(vars(args))
    return cls(lambda: build_encoder(config, dataset.layout, dataset.persons, len(dataset.channels)), dataset.layout,
               **asdict(CMDConfig.from_dict(vars(args))), coordinates=dataset.coordinates, **extra)
