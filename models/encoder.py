"""The contract every encoder keeps (docs/method.md, "Encoders"), which the CMD model, the fast
path, evaluation and feature export rely on."""
from torch import nn


class Encoder(nn.Module):
    """An encoder of clips (N, C, T, V, M): ``features(x)`` gives the (N, ``feature_dim``)
    representation that kNN, the linear protocol and feature export use; ``fc``, the projection
    head (``feature_dim`` -> ``dim``), serves pretraining alone; ``forward(x)`` is
    ``fc(features(x))``. An encoder whose features pool a map may expose both halves,
    ``feature_map(x) -> (map, persons)`` and ``pool(map, persons)``, for methods that work on the
    map (AimCLR's attention drop); ST-GCN does.

    A new encoder subclasses this, names its own settings in ``SETTINGS`` (argument names whose
    defaults live in ``options/presets.py``, each with a flag in ``options/args.py``), builds itself
    in :meth:`build`, and is registered in ``models.ENCODERS``; its recipe is its entry in
    ``options.presets.ENCODER_RECIPES``."""

    SETTINGS = ()

    @classmethod
    def build(cls, settings, layout, persons, channels, dim, mlp):
        """The encoder of ``settings`` ({name: value} for ``SETTINGS``) for clips of ``layout``
        skeletons, ``persons`` bodies and ``channels`` channels, with a ``dim``-d head (an MLP
        where ``mlp``)."""
        raise NotImplementedError(f'{cls.__name__} does not say how it is built')

    def features(self, x):
        raise NotImplementedError(f'{type(self).__name__} has no features()')

    def forward(self, x):
        return self.fc(self.features(x))
