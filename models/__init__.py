"""Encoders and methods. ``ENCODERS`` and ``METHODS`` are the registries: their names are the
``--encoder`` and ``--method`` choices, and a new encoder or method is one module of its own plus
one entry here (docs/method.md, "Encoders" and "Methods")."""
from dataclasses import dataclass, replace

from models.aimclr import AimCLR
from models.cmd import CMD
from models.gru import GRUEncoder
from models.mamp import MAMP, FinetuneHead
from models.moco import CrosSCLR, SkeletonCLR
from models.stgcn import STGCNEncoder
from models.transformer import TransformerEncoder

ENCODERS = {'gru': GRUEncoder, 'stgcn': STGCNEncoder, 'transformer': TransformerEncoder}
METHODS = {'cmd': CMD, 'skeletonclr': SkeletonCLR, 'crossclr': CrosSCLR, 'aimclr': AimCLR, 'mamp': MAMP}
# The method of a run that names none, and of a checkpoint that records none (written before methods
# were): the one this codebase is built around.
DEFAULT_METHOD = 'cmd'
# What a small dataset pretrains with when the command line names neither a method nor an encoder:
# what learned best on the validation benchmarks (docs/protocols.md, "The default for small data").
SMALL_DEFAULT = dict(method='cmd', encoder='gru',
                     why='CMD with the GRU learned best on NW-UCLA xview_dev and SBU dev, ahead of CMD with the '
                         'transformer and of MAMP (benchmarks/RESULTS.md, "Small-data presets")')
# The supervised protocols' heads besides a linear one (``--head``): built from the encoder's token
# grid's width, the layout's joints and the classes.
HEADS = {'mamp': FinetuneHead}
# What every encoder takes; then each encoder's own settings (``Encoder.SETTINGS``).
COMMON_SETTINGS = ('encoder', 'dim', 'mlp')


def own_settings():
    """Every registered encoder's own settings (:class:`models.encoder.Setting`), by name, once each."""
    return {s.name: s for e in ENCODERS.values() for s in e.SETTINGS}


def method_settings():
    """Every registered method's own settings by name, for the flags: a setting several methods
    declare is one flag, whose help joins theirs and whose default each method gives its own."""
    merged = {}
    for method in METHODS.values():
        for setting in getattr(method, 'SETTINGS', ()):
            known = merged.get(setting.name)
            if known is None:
                merged[setting.name] = setting
            elif setting.help not in known.help:
                merged[setting.name] = replace(known, help=f'{known.help}; {setting.help}', low=min(known.low, setting.low))
    return merged


def readers(name):
    """The methods and encoders that read the setting ``name``: (method names, encoder names)."""
    methods = [m for m, cls in METHODS.items() if any(s.name == name for s in getattr(cls, 'SETTINGS', ()))]
    encoders = [e for e, cls in ENCODERS.items() if any(s.name == name for s in cls.SETTINGS)]
    return methods, encoders


def method_class(name):
    """The class of method ``name``, the default for none."""
    return METHODS[name or DEFAULT_METHOD]


def encoder_setting_names():
    """The names of everything that defines an encoder: the common settings, then every encoder's own."""
    return COMMON_SETTINGS + tuple(own_settings())


def encoder_of(values):
    """What defines the encoder of ``values`` (a run's settings, any mapping): the common settings
    and its encoder's own, and nothing of another encoder's."""
    own = tuple(s.name for s in ENCODERS[values['encoder']].SETTINGS) if values.get('encoder') in ENCODERS else ()
    return {k: values.get(k) for k in COMMON_SETTINGS + own}


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
        own = tuple(s.name for s in ENCODERS[name].SETTINGS)
        missing = [key for key in ('dim', 'mlp') + own if values.get(key) is None]
        if missing:
            raise ValueError(f'encoder {name}: no value for {", ".join(missing)}')
        return cls(name, values['dim'], values['mlp'], tuple((key, values[key]) for key in own))


def build_encoder(config, layout, persons, channels=3):
    """One encoder of ``config`` for clips of ``layout`` skeletons, ``persons`` bodies and
    ``channels`` coordinates per joint."""
    return ENCODERS[config.encoder].build(dict(config.settings), layout, persons, channels, config.dim, config.mlp)


def build_method(args, dataset, cls=None, **extra):
    """The pretraining model of ``args.method`` (default :data:`DEFAULT_METHOD`: checkpoints that
    predate methods are its) for ``dataset`` (a :class:`feeder.info.DatasetInfo`). ``cls`` and
    ``extra``: a subclass built to compute that method faster (the fast path's), never another
    method's."""
    method = method_class(getattr(args, 'method', None))
    if cls is not None and not issubclass(cls, method):
        raise ValueError(f'{cls.__name__} computes {cls.__mro__[1].__name__}, not {method.__name__}')
    config = EncoderConfig.from_dict(vars(args))
    return (cls or method).build(lambda: build_encoder(config, dataset.layout, dataset.persons, len(dataset.channels)),
                                 args, dataset, **extra)
