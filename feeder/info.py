"""What a prepared dataset is: its skeleton layout, persons, channels, benchmarks and classes.

The built-in datasets are described here once; any prepared folder may carry its own description
as ``dataset.json`` beside its benchmark folders (``feeder.prepare`` writes one), which is all
``--dataset custom`` needs. The recipes that train on them live in ``options/presets.py``;
``docs/data.md`` describes the prepared layout.
"""
import json
import os
from dataclasses import dataclass, field

from feeder.layouts import Layout, get_layout
from utils.io import read_json, write_text_atomic

# Frames stored per clip in the community layout, and its two parts.
MAX_FRAMES = 300
PARTS = ('train', 'val')
CHANNELS = ('xyz', 'xy', 'xys')


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    layout: Layout
    persons: int
    benchmarks: tuple
    num_classes: int       # 0 where nothing is labelled
    channels: str = 'xyz'  # 'xyz', 'xy', or 'xys' (x, y and a detector's confidence)
    dir_name: str = ''     # the folder name peers use for the prepared data
    kind: str = ''         # the built-in dataset this is, or 'custom'
    class_names: tuple = ()
    sizes: dict = field(default_factory=dict, compare=False)  # {benchmark: {part: clips}} where known
    source: str = ''
    # how pose data was prepared: {"align": ..., "fill_missing": ...} (docs/data.md, "Your own data")
    preparation: dict = field(default_factory=dict, compare=False)
    # {benchmark: {part: {"min", "median", "mean", "max"}}}: the stored clip lengths, where known
    lengths: dict = field(default_factory=dict, compare=False)

    @property
    def skeleton(self):
        """What an encoder's input shape depends on: (layout, persons, channels)."""
        return self.layout, self.persons, self.channels

    @property
    def coordinates(self):
        """How many leading channels are coordinates (the rest is a confidence)."""
        return 3 if self.channels == 'xyz' else 2

    def class_name(self, label):
        """A label as written out: its class name where recorded, else its number; empty for -1."""
        label = int(label)
        if label < 0:
            return ''
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def to_json(self):
        return {'name': self.name, 'dataset': self.kind or self.name, 'layout': self.layout.to_json(),
                'persons': self.persons, 'channels': self.channels, 'num_classes': self.num_classes,
                'class_names': list(self.class_names), 'benchmarks': {b: self.sizes.get(b, {}) for b in self.benchmarks},
                'source': self.source, 'preparation': self.preparation, 'lengths': self.lengths}

    @classmethod
    def from_json(cls, record, source):
        """From a ``dataset.json`` record; errors name ``source`` and the key."""
        def fail(key, message):
            raise ValueError(f'{source}: "{key}": {message}')
        if not isinstance(record, dict):
            raise ValueError(f'{source}: expected a JSON object describing a prepared dataset')
        for key in ('name', 'layout', 'persons', 'channels', 'benchmarks'):
            if key not in record:
                fail(key, 'missing')
        if record['channels'] not in CHANNELS:
            fail('channels', f'expected one of {CHANNELS}, found {record["channels"]!r}')
        if not isinstance(record['persons'], int) or record['persons'] < 1:
            fail('persons', 'expected a whole number of at least 1')
        benchmarks = record['benchmarks']
        if not isinstance(benchmarks, dict) or not benchmarks:
            fail('benchmarks', 'expected {benchmark: {part: clips}}')
        layout = Layout.from_json(record['layout'], source=f'{source}: "layout"')
        return cls(record['name'], layout, record['persons'], tuple(benchmarks), int(record.get('num_classes') or 0),
                   record['channels'], kind=record.get('dataset', 'custom'),
                   class_names=tuple(record.get('class_names') or ()), sizes=benchmarks,
                   source=record.get('source', ''), preparation=dict(record.get('preparation') or {}),
                   lengths=dict(record.get('lengths') or {}))


def _builtin(name, dir_name, benchmarks, num_classes, layout='ntu25', persons=2):
    return DatasetInfo(name, get_layout(layout), persons, benchmarks, num_classes, dir_name=dir_name, kind=name,
                       preparation={'align': 'published', 'fill_missing': 'zero'})


BUILTIN_DATASETS = {info.name: info for info in (
    _builtin('ntu60', 'NTU-RGB-D-60-AGCN', ('xsub', 'xview'), 60),
    _builtin('ntu120', 'NTU-RGB-D-120-AGCN', ('xsub', 'xsetup'), 120),
    # Phase II keeps phase I's 51-class numbering, so both classify over 51 outputs.
    _builtin('pku1', 'PKU-MMD-v1-AGCN', ('xsub', 'xview'), 51),
    _builtin('pku2', 'PKU-MMD-v2-AGCN', ('xsub', 'xview'), 51),
    # xview_dev splits the training views 1 and 2 by subject, to choose settings on
    _builtin('ucla', 'NW-UCLA-AGCN', ('xview', 'xview_dev'), 10, layout='kinect_v1_20', persons=1),
    # Generated by ``python -m feeder.synthetic``; split like NTU-60.
    _builtin('synthetic', 'synthetic', ('xsub', 'xview'), 12),
)}
DATASET_NAMES = tuple(sorted(BUILTIN_DATASETS)) + ('custom',)


def read_dataset_json(path):
    return DatasetInfo.from_json(read_json(path), source=path)


def dataset_info(name, root=None):
    """The description of dataset ``name``: the prepared folder's ``root/dataset.json`` where it
    has one (required for ``custom``), else the built-in table's."""
    path = os.path.join(root, 'dataset.json') if root else None
    if path and os.path.isfile(path):
        info = read_dataset_json(path)
        if name != 'custom' and info.kind != name:
            raise ValueError(f'{path} describes {info.kind} data ({info.name}), not {name}; pass --dataset '
                             f'{"custom" if info.kind == "custom" else info.kind}')
        return info
    if name == 'custom':
        raise FileNotFoundError(f'--data-root {root}: no dataset.json; prepare your data with '
                                '"python -m feeder.prepare --dataset custom --annotations PATH --layout NAME ..."')
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        raise ValueError(f'unknown dataset {name!r}; known: {", ".join(DATASET_NAMES)}') from None


def write_dataset_json(path, info):
    write_text_atomic(path, json.dumps(info.to_json(), indent=1))
