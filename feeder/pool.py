"""Pooled pretraining (docs/pretraining.md, "Pooling datasets"): the training part of the run's benchmark
and of each ``--pool ROOT:BENCHMARK``, the pooled clips made clips of the run's skeleton
(:class:`feeder.joints.SkeletonMap`) as they are read. Only training parts are pooled."""
import bisect
import dataclasses
import os
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from feeder.datasets import SkeletonFolder
from feeder.info import read_dataset_json
from feeder.joints import SkeletonMap
from feeder.layouts import get_layout
from feeder.offline import offline_transform

SAMPLING = ('proportional', 'balanced')


class PoolPart(NamedTuple):
    """One benchmark of the pool: its ``root`` (ROOT/BENCHMARK), description, training folder (each
    clip after the run's offline step, then mapped) and the map, ``None`` for the run's own."""
    name: str
    root: str
    info: object
    folder: SkeletonFolder
    adapt: object


class MappedStep:
    """What a pooled clip goes through: the run's offline step on its own skeleton, then the map (a
    class, not a closure: data-loader workers may be spawned)."""

    def __init__(self, step, adapt):
        self.step, self.adapt = step, adapt

    def __call__(self, clip):
        return self.adapt((self.step(clip) if self.step else clip)[None])[0]


def _transform(layout, adapt, offline):
    step = offline_transform(offline, layout)
    return step if adapt is None else MappedStep(step, adapt)


def parse_pool(spec):
    """``ROOT:BENCHMARK`` -> (root, benchmark), or the error naming the flag."""
    root, _, benchmark = spec.rpartition(':')
    if not root or not benchmark:
        raise ValueError(f'--pool {spec}: expected ROOT:BENCHMARK, a prepared folder and one of its benchmarks')
    return root, benchmark


class Pooled(NamedTuple):
    """One ``--pool ROOT:BENCHMARK`` as read (:func:`read_pool`): the spec, ROOT/BENCHMARK, its name in
    records (``NAME:BENCHMARK``) and its ``dataset.json``."""
    spec: str
    root: str
    name: str
    info: object


def read_pool(specs):
    """The :class:`Pooled` list of the ``--pool`` specs, each ``dataset.json`` read once; one line for a
    spec that is not a prepared benchmark."""
    pooled = []
    for spec in specs:
        root, benchmark = parse_pool(spec)
        description = os.path.join(root, 'dataset.json')
        if not os.path.isfile(description):
            raise FileNotFoundError(f'--pool {spec}: no {description}; expected a folder feeder.prepare wrote')
        info = read_dataset_json(description)
        if benchmark not in info.benchmarks:
            raise ValueError(f'--pool {spec}: {info.name} has the benchmarks {", ".join(info.benchmarks)}, not '
                             f'{benchmark}')
        pooled.append(Pooled(spec, os.path.join(root, benchmark), f'{info.name}:{benchmark}', info))
    return pooled


def pooled_parts(pooled, data_root, protocol, dataset, run=None):
    """[(name, root, info, adapt)] of the pool: the run's benchmark (``dataset``'s), then each of
    ``pooled`` (:func:`read_pool`), each mapped onto ``run`` (the run's skeleton, :func:`in_layout`;
    default ``dataset``); one line for a benchmark pooled twice or one that cannot be mapped."""
    run = run or dataset
    own = os.path.join(data_root, protocol)
    try:
        adapt = None if dataset.skeleton == run.skeleton else SkeletonMap(dataset, run)
    except ValueError as e:
        raise ValueError(f'--layout {run.layout.name}: {e}') from None
    parts, seen = [(dataset.name, own, dataset, adapt)], {os.path.realpath(own)}
    for spec, root, name, info in pooled:
        folder = os.path.realpath(root)
        if folder in seen:
            raise ValueError(f'--pool {spec}: {folder} is in the pool already')
        seen.add(folder)
        try:
            adapt = None if info.skeleton == run.skeleton else SkeletonMap(info, run)
        except ValueError as e:
            raise ValueError(f'--pool {spec}: {e}') from None
        parts.append((name, root, info, adapt))
    return parts


def open_pool(parts, offline):
    """The :class:`PoolPart` list of :func:`pooled_parts`' ``parts``, their training folders open,
    each clip after the run's ``offline`` step made one of the run's skeleton."""
    return [PoolPart(name, root, info, SkeletonFolder(root, 'train', _transform(info.layout, adapt, offline)), adapt)
            for name, root, info, adapt in parts]


def in_layout(dataset, layout, pooled=()):
    """The run's skeleton with ``--layout`` (a built-in name or a JSON file): ``dataset`` in that
    layout, with the most persons of its own and each pooled benchmark's (``pooled``, :func:`read_pool`);
    its channels."""
    if not layout:
        return dataset
    try:
        chosen = get_layout(layout)
    except ValueError as e:  # a layout file's errors name the flag and the file already
        raise ValueError(str(e) if str(e).startswith('--layout') else f'--layout {layout}: {e}') from None
    persons = max([dataset.persons] + [p.info.persons for p in pooled])
    return dataclasses.replace(dataset, layout=chosen, persons=persons)


def pooled_info(run, protocol, parts):
    """``run`` (the run's skeleton) described with the training size and median clip length of
    :func:`pooled_parts`' ``parts`` for ``protocol``, which the small-data rules read
    (docs/protocols.md, "Small datasets")."""
    if len(parts) == 1:
        return run
    lengths = [np.load(os.path.join(root, 'train_num_frame.npy')) for _, root, _, _ in parts]
    lengths = np.concatenate(lengths)
    sizes = {**run.sizes, protocol: {**run.sizes.get(protocol, {}), 'train': int(len(lengths))}}
    median = {**run.lengths.get(protocol, {}), 'train': {'median': float(np.median(lengths))}}
    return dataclasses.replace(run, sizes=sizes, lengths={**run.lengths, protocol: median})


class PooledFolder:
    """The pool's training clips one after another, as one folder (the interface pretraining reads
    of :class:`feeder.datasets.SkeletonFolder`)."""

    def __init__(self, parts):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p.folder) for p in parts]).tolist()
        self.part = 'train'
        self.data_path = ' + '.join(p.folder.data_path for p in parts)

    def __len__(self):
        return self.offsets[-1]

    @property
    def sizes(self):
        return [len(p.folder) for p in self.parts]

    def check(self, dataset):
        """Each benchmark's arrays against its own description (the first's is ``dataset``)."""
        for part in self.parts:
            part.folder.check(part.info)

    def clip(self, index):
        k = bisect.bisect_right(self.offsets, index) - 1
        return self.parts[k].folder.clip(index - self.offsets[k])


class BalancedSampler(Sampler):
    """``--pool-sampling balanced``: an epoch of as many clips as the pool holds, each benchmark the
    same share of them (a smaller one's clips repeated, a larger one's not all seen), shuffled; under
    DDP each process takes every world-size-th. ``set_epoch`` draws anew, the same on every rank."""

    def __init__(self, sizes, seed, rank=0, world_size=1):
        self.sizes, self.seed, self.rank, self.world_size, self.epoch = list(sizes), seed, rank, world_size, 0
        self.total = sum(self.sizes) - sum(self.sizes) % world_size

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.total // self.world_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        offsets = np.cumsum([0] + self.sizes)
        share = [self.total // len(self.sizes) + (k < self.total % len(self.sizes)) for k in range(len(self.sizes))]
        drawn = []
        for k, (size, n) in enumerate(zip(self.sizes, share)):
            # whole shuffled passes, then part of one more: a clip repeats only once all have been drawn
            passes = [torch.randperm(size, generator=generator) for _ in range(-(-n // size))]
            drawn.append(torch.cat(passes)[:n] + int(offsets[k]))
        order = torch.cat(drawn)[torch.randperm(self.total, generator=generator)]
        return iter(order[self.rank::self.world_size].tolist())
