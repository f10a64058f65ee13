"""The contract every encoder keeps (docs/method.md, "Encoders"), which the methods, the fast
path, evaluation and feature export rely on: the encoder, its own settings, its projection head,
and the stream encoder that feeds it one modality of a layout's clips."""
from dataclasses import dataclass

from torch import nn

from feeder.modalities import to_modality


@dataclass(frozen=True)
class Setting:
    """One of an encoder's or a method's own settings: the argument ``name`` (its flag is
    ``--name-with-dashes``), its ``type`` (an ``int`` is at least ``low``; a ``bool`` is a switch,
    ``--name`` / ``--no-name``), its ``default`` (the published recipe's; ``None``: resolved from
    the other settings), ``help`` and, for a choice, ``choices``."""
    name: str
    type: type
    default: object
    help: str
    choices: tuple = None
    low: int = 1

    @property
    def flag(self):
        return '--' + self.name.replace('_', '-')


# The one switch of a method whose published code has defects: off, the method computes what its
# published code computes; on, what its paper describes (docs/method.md, "Published defects").
FIX_DEFECTS = Setting('fix_defects', bool, False,
                      "crossclr, aimclr, mamp: fix the published code's defects (docs/method.md, \"Published "
                      'defects"); default: as published')


def projection_head(in_dim, dim, mlp):
    """``fc``: Linear(in, dim), or with ``mlp`` Linear(in, in) -> ReLU -> Linear(in, dim).

    The published code Xavier-initialises the original ``fc`` (the last layer); the MLP's extra
    hidden layer keeps PyTorch's default init.
    """
    last = nn.Linear(in_dim, dim)
    nn.init.xavier_uniform_(last.weight)
    if not mlp:
        return last
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), last)


class Encoder(nn.Module):
    """An encoder of clips (N, C, T, V, M): ``features(x)`` gives the (N, ``feature_dim``)
    representation that kNN, the linear protocol and feature export use; ``fc``, the projection
    head (``feature_dim`` -> ``dim``, :func:`projection_head`), serves pretraining alone;
    ``forward(x)`` is ``fc(features(x))``. An encoder whose features pool a map may expose both
    halves, ``feature_map(x) -> (map, persons)`` and ``pool(map, persons)``, for methods that work
    on the map (AimCLR's attention drop); ST-GCN does.

    A new encoder subclasses this, declares its own settings in ``SETTINGS`` (:class:`Setting`:
    the flags of every entry script and their defaults are made from them), builds itself in
    :meth:`build`, and is registered in ``models.ENCODERS``; a recipe of its own (other lr,
    frames, ...) is its ``RECIPE``."""

    SETTINGS = ()
    # its recipe, the changes over the published recipe that pretraining with it takes (frames, lr,
    # ...), and its changes on small data (options/presets.py layers them)
    RECIPE, SMALL_RECIPE = {}, {}
    # entries its parameters hold at zero by construction, not counted as trained
    fixed_zeros = 0

    @classmethod
    def build(cls, settings, layout, persons, channels, dim, mlp):
        """The encoder of ``settings`` ({name: value} for ``SETTINGS``) for clips of ``layout``
        skeletons, ``persons`` bodies and ``channels`` channels, with a ``dim``-d head (an MLP
        where ``mlp``)."""
        raise NotImplementedError(f'{cls.__name__} does not say how it is built')

    def features(self, x):
        raise NotImplementedError(f'{type(self).__name__} has no features()')

    def released_name(self, name):
        """The name that this encoder's state entry ``name`` has in the authors' released layout
        (docs/checkpoints.md, "Published layouts"): by default the same."""
        return name

    def released_state_dict(self):
        """This encoder's state in the authors' released layout."""
        return {self.released_name(k): v for k, v in self.state_dict().items()}

    def load_released_state_dict(self, state):
        """Load one encoder in the authors' released layout; returns the missing and unexpected keys."""
        ours = {self.released_name(k): k for k in self.state_dict()}
        return self.load_state_dict({ours.get(k, k): v for k, v in state.items()}, strict=False)

    def forward(self, x):
        return self.fc(self.features(x))


class StreamEncoder(nn.Module):
    """One stream: ``encoder`` fed the ``modality`` of joint clips (N, C, T, V, M) of ``layout``
    skeletons (``coordinates``: how many leading channels are coordinates, the rest carried along;
    :func:`feeder.modalities.to_modality`), clips of another skeleton first through ``adapt``. What
    a method's ``encoders()`` returns and evaluation reads; its parameters are the encoder's, under
    ``encoder.``."""

    def __init__(self, encoder, modality, layout, coordinates=None, adapt=None):
        super().__init__()
        self.encoder, self.modality, self.layout, self.coordinates = encoder, modality, layout, coordinates
        self.adapt = adapt

    @property
    def feature_dim(self):
        return self.encoder.feature_dim

    def inputs(self, clips):
        """The encoder's input: this stream's modality of ``clips`` (first made clips of the encoder's
        skeleton by ``adapt``, where they are another dataset's: :class:`feeder.joints.SkeletonMap`)."""
        if self.adapt is not None:
            clips = self.adapt(clips)
        return to_modality(clips, self.modality, self.layout, self.coordinates)

    def features(self, clips):
        return self.encoder.features(self.inputs(clips))

    def forward(self, clips):
        return self.encoder(self.inputs(clips))
