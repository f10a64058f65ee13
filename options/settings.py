"""A run's settings, resolved once at the top of an entry script: every value and where it came
from (docs/pretraining.md, "A run's folder"). The rest of the run reads them and never writes."""
import argparse


class FrozenSettingsError(AttributeError):
    pass


class Settings(argparse.Namespace):
    """Settings read as attributes (``settings.lr``; ``vars(settings)`` gives them all), frozen:
    a change is a new object (:meth:`replace`). ``sources``: {name: where its value came from},
    e.g. "command line", "published recipe", "small-data rule: ...", "checkpoint"."""

    __slots__ = ('sources',)

    def __init__(self, values, sources=None):
        super().__init__()
        self.__dict__.update(values)
        object.__setattr__(self, 'sources', {k: (sources or {}).get(k, 'unknown') for k in values})

    def __setattr__(self, name, value):
        raise FrozenSettingsError(f'settings are resolved once and frozen: {name} cannot be set to {value!r} '
                                  'here (Settings.replace makes a changed copy)')

    def __delattr__(self, name):
        raise FrozenSettingsError(f'settings are resolved once and frozen: {name} cannot be removed')

    def replace(self, source, **changes):
        """A copy with ``changes``, each recorded as coming from ``source``."""
        return Settings({**vars(self), **changes}, {**self.sources, **dict.fromkeys(changes, source)})

    def ruled(self):
        """The settings whose value a rule gave (their source says which), as ``(name, source)``."""
        return [(k, s) for k, s in self.sources.items() if s.startswith('small-data rule')]

