"""What every source of raw data gives the preparation pipeline (:mod:`feeder.raw.prepare`): a
lister finds the files of a dataset (:class:`Listing`, one :class:`Task` per file) in the main
process; a reader (a row of :class:`Source`) turns a task into clips in a worker."""
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from feeder.info import PARTS, DatasetInfo, dataset_info


class PrepareError(RuntimeError):
    pass


@dataclass
class Sample:
    name: str
    label: int
    parts: dict                     # benchmark -> 'train' | 'val'
    frames: tuple = ()              # PKU: (start, end) within the video
    rows: dict = field(default_factory=dict)  # (benchmark, part) -> row in that output


@dataclass
class Task:
    """One raw file to read, of the kind ``source`` (a key of :data:`feeder.raw.sources.SOURCES`);
    it yields one sample (NTU, NW-UCLA, a clip of own data) or several (a PKU-MMD video). A clip of
    own data listed in the main process travels in ``clip`` (a :class:`feeder.raw.custom.CustomClip`)."""
    source: str
    path: str
    samples: list
    clip: object = None


class Clip(NamedTuple):
    data: np.ndarray  # (M, T, V, C) float32
    length: int       # the true length
    label: int = None  # a label the file itself gave, where the listing had none


@dataclass(frozen=True)
class Source:
    """A kind of raw file: ``read(task, prep)`` gives one :class:`Clip` per sample of the task
    (``prep``: a :class:`feeder.raw.pose.PosePreparation`); clips shorter than ``min_frames`` are
    left out; longer than ``MAX_FRAMES``, they are resampled (else cut); ``normalised``: the reader
    normalises (pose data), else the NTU steps run after it."""
    read: Callable
    min_frames: int = 1
    resample: bool = False
    normalised: bool = False


@dataclass
class Listing:
    """What a dataset's lister found: its description, the tasks, what was skipped (reason ->
    names), where it was read from and the (benchmark, part) pairs that must have clips."""
    info: DatasetInfo
    tasks: list
    skipped: dict
    source: str
    expected: list


def builtin_listing(args, tasks, skipped, info=None):
    """The listing of a built-in dataset: every part of every benchmark must have clips."""
    info = info or dataset_info(args.dataset)
    return Listing(info, tasks, skipped, args.raw_dir, [(b, p) for b in info.benchmarks for p in PARTS])


def pose_record(fill, align, **extra):
    """How pose data was prepared, as ``dataset.json`` records it (``preparation``)."""
    return {'align': align, 'fill_missing': fill, **extra}

