"""What a self-supervised method is (docs/method.md, "Methods"): one class that owns its model and
everything that makes it that method. A new method subclasses :class:`Method` in a module of its
own and takes one row of ``models.METHODS``; nothing else in the code knows which methods exist.
"""
from torch import nn

from feeder.augment import random_crop_resize, random_rotation, random_spatial


def normal(augment, clips, num_frames, draws=None):
    """The default view recipe (CMD's published augmentation, docs/method.md): a random crop of
    ``U(scale)`` of each clip (at least ``min_crop`` frames) resized to ``frames``, then (with
    ``rotation`` degrees) a random turn, then joint corruption or a shear (``corruption``: the
    probability of corruption; ``shear``: the shear's amplitude)."""
    x = random_crop_resize(clips, num_frames, augment.frames, augment.scale, augment.min_crop)
    if augment.rotation:
        x = random_rotation(x, augment.rotation)
    return random_spatial(x, augment.corrupt_joints, shear=augment.shear, corruption=augment.corruption,
                          coordinates=augment.coordinates)


class Method(nn.Module):
    """The interface every method keeps, with its defaults.

    Declared by the class:

    - ``VIEWS``: the pretraining views it takes, one view recipe each (a function of
      :class:`feeder.augment.ViewAugment`'s kind): by default two of :func:`normal`, the query's
      and the key's.
    - ``SETTINGS``: its own settings (:class:`models.encoder.Setting`): ``pretrain.py``'s flags and
      their defaults are made from them; a flag a method does not read is refused for it.
    - ``ENCODER``: the encoder it was published with (``None``: the default encoder).
    - ``RECIPE``: its published recipe, the changes over its encoder's recipe
      (``options.presets.recipe`` layers them); ``DATASET_RECIPES``: its changes for a dataset kind;
      ``SMALL_RECIPE``: what replaces ``RECIPE`` on small data (``None``: nothing of its own).
    - ``PROTOCOLS``: the evaluation protocols where its published code differs from the default
      ones, ``{'linear': {...}, 'finetune': {...}}``, and ``PUBLISHED``, whose code that is.

    Implemented by the class: :meth:`build`, :meth:`forward`, :meth:`encoders`; optionally
    :meth:`set_epoch`, :meth:`step_state`, :meth:`problems` and :meth:`resolve`.
    """

    VIEWS = (normal, normal)
    SETTINGS = ()
    ENCODER = None
    RECIPE, DATASET_RECIPES, SMALL_RECIPE = {}, {}, None
    PROTOCOLS, PUBLISHED = {}, None

    @classmethod
    def build(cls, make_encoder, args, dataset):
        """The model of a run's settings ``args`` for ``dataset`` (a :class:`feeder.info.DatasetInfo`);
        ``make_encoder()`` makes one encoder of the run's ``--encoder`` for the dataset's skeletons."""
        raise NotImplementedError(f'{cls.__name__} does not say how it is built')

    def forward(self, views):
        """One training step's ``(loss, stats)`` on the tuple of view batches, ``stats`` a dict of
        detached scalars for the log."""
        raise NotImplementedError(f'{type(self).__name__} has no forward')

    def encoders(self):
        """The trained encoders, {modality: :class:`models.encoder.StreamEncoder`}: what the kNN
        monitor and every evaluation read."""
        raise NotImplementedError(f'{type(self).__name__} has no encoders()')

    def set_epoch(self, epoch):
        """The training loop says which epoch (0-based) the next steps belong to: a method whose
        loss changes during the run reads ``self.epoch``."""
        self.epoch = epoch

    def step_state(self):
        """What a training step computes, where its inputs, weights and buffers do not say it: a
        captured step (``fast/step.py``) is captured anew when it changes. ``None`` unless the
        method's computation changes during the run."""
        return None

    @classmethod
    def problems(cls, args, global_batch):
        """What in the run's settings cannot work for this method, as sentences said before any
        work starts."""
        return []

    @classmethod
    def resolve(cls, values):
        """Settings that follow from the others once they are resolved (e.g. a mining epoch of half
        the run): ``{name: (value, why)}`` for those of ``values`` left at ``None``."""
        return {}
