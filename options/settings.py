"""A run's settings, resolved once at the top of an entry script: every value and where it came
from (docs/pretraining.md, "A run's folder"). The rest of the run reads them and never writes.
:class:`Resolution` is how every entry script resolves them (``pretrain.py``, the evaluation
scripts through ``evaluation/common.py``, ``timeline.py``): the command line, then layers of
defaults, each value with its source."""
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



class Resolution:
    """Settings being resolved: the parsed command line (``args``; a value that is not ``None``,
    and not the flag's own default where ``parser`` is given, comes from the command line), then
    layers that fill what is still open, each value recorded with where it came from; ``settings()``
    freezes them."""

    def __init__(self, args, parser=None):
        self.values, self.sources = dict(vars(args)), {}
        for key, value in self.values.items():
            given = value is not None and (parser is None or value != parser.get_default(key))
            self.sources[key] = 'command line' if given else 'flag default' if value is not None else 'not set'

    def layer(self, changes, source):
        """Fill the settings of ``changes`` still open (``None``) from it, as coming from ``source``."""
        for key, value in changes.items():
            if self.values.get(key) is None:
                self.set(key, value, source)

    def set(self, key, value, source):
        self.values[key], self.sources[key] = value, source

    def drop(self, keys):
        """The settings ``keys`` are not this run's: gone from it."""
        for key in keys:
            self.values.pop(key, None)
            self.sources.pop(key, None)

    def settings(self):
        return Settings(self.values, self.sources)
