"""Datasets over the community layout (``{part}_data_joint.npy``, ``_num_frame.npy``, ``_label.pkl``)."""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from feeder.augment import center_crop_resize, random_crop_resize, random_euler_rotation
from feeder.info import MAX_FRAMES, PARTS
from utils import safe_pickle


class SkeletonFolder:
    """One part (``train`` or ``val``) of a prepared benchmark folder, memory-mapped.

    Checks the three files against each other on open; the array is opened lazily in each process
    (data-loader workers included) so nothing large is copied or pickled. ``transform``: what every
    clip goes through first (an offline step, :func:`feeder.offline.offline_transform`), if anything.
    """

    def __init__(self, root, part, transform=None):
        if part not in PARTS:
            raise ValueError(f'part must be one of {PARTS}, got {part!r}')
        self.root, self.part = root, part
        self.data_path = os.path.join(root, f'{part}_data_joint.npy')
        frames_path = os.path.join(root, f'{part}_num_frame.npy')
        label_path = os.path.join(root, f'{part}_label.pkl')
        for path in (self.data_path, frames_path, label_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f'{root}: missing {os.path.basename(path)}; expected the folder written by '
                    f'"python -m feeder.prepare" ({part}_data_joint.npy, {part}_num_frame.npy, {part}_label.pkl)')
        data = np.load(self.data_path, mmap_mode='r')
        if data.ndim != 5 or data.shape[1] not in (2, 3) or data.shape[2] != MAX_FRAMES:
            raise ValueError(f'{self.data_path}: expected an array (N, C, {MAX_FRAMES}, V, M) with C 2 or 3, '
                             f'found {data.shape}')
        self.shape = data.shape
        self.num_frames = np.minimum(np.load(frames_path).astype(np.int64), MAX_FRAMES)
        self.names, self.labels = read_labels(label_path)
        if not len(self.names) == len(self.labels) == len(self.num_frames) == len(data):
            raise ValueError(f'{root}: {part} files disagree on the sample count: data {len(data)}, '
                             f'num_frame {len(self.num_frames)}, names {len(self.names)}, labels {len(self.labels)}')
        if (self.num_frames < 1).any():
            raise ValueError(f'{frames_path}: every clip needs at least one frame')
        self._data = None
        self.transform = transform

    def check(self, dataset, labelled=False):
        """Clear errors where the arrays do not fit ``dataset`` (a :class:`feeder.info.DatasetInfo`):
        joints, persons, channels and, with ``labelled``, the label range."""
        channels, joints, persons = self.shape[1], self.shape[3], self.shape[4]
        layout = dataset.layout
        if (joints, persons, channels) != (layout.num_joints, dataset.persons, len(dataset.channels)):
            raise ValueError(f'{self.data_path} holds {joints} joints x {persons} persons x {channels} channels, but '
                             f'{dataset.name} is {layout.name} ({layout.num_joints} joints) x {dataset.persons} '
                             f'persons x {len(dataset.channels)} channels ({dataset.channels})')
        if labelled and (self.labels < 0).any():
            raise ValueError(f'{self.root}/{self.part}_label.pkl: {int((self.labels < 0).sum())} of {len(self)} clips are '
                             'unlabelled (label -1); evaluation needs labels (pretraining does not)')
        if labelled and len(self.labels):
            bad = np.flatnonzero((self.labels < 0) | (self.labels >= dataset.num_classes))
            if len(bad):
                raise ValueError(f'{self.root}/{self.part}_label.pkl: labels must lie in 0..{dataset.num_classes - 1} '
                                 f'for the {dataset.num_classes} classes of {dataset.name}; clip '
                                 f'{self.names[bad[0]]} has {self.labels[bad[0]]} ({len(bad)} such clips)')

    def __len__(self):
        return self.shape[0]

    @property
    def num_joints(self):
        return self.shape[3]

    def find(self, name=None, index=None):
        """The row of the clip named ``name``, or row ``index`` checked; errors say what there is."""
        if name is not None:
            if name not in self.names:
                raise ValueError(f'--name {name}: no such clip in {self.root} {self.part}')
            return self.names.index(name)
        if not 0 <= index < len(self):
            raise ValueError(f'--index {index}: {self.root} {self.part} has clips 0..{len(self) - 1}')
        return index

    def clip(self, index):
        """(C, n, V, M) float32 tensor of the clip's true frames (n <= 300), after the ``transform``."""
        if self._data is None:
            self._data = np.load(self.data_path, mmap_mode='r')
        clip = torch.from_numpy(np.array(self._data[index, :, :self.num_frames[index]]))
        return clip if self.transform is None else self.transform(clip)

    def __getstate__(self):
        return {**self.__dict__, '_data': None}


def read_labels(path):
    """A ``{part}_label.pkl`` file: (names, integer labels), read without running code."""
    record = safe_pickle.load(path, safe_pickle.NUMPY_SCALARS, what='label file')
    expected = f'{path}: expected a pickled (sample_names, labels) tuple of a list of names and integer labels'
    if not isinstance(record, (tuple, list)) or len(record) != 2:
        raise ValueError(f'{expected}, found {type(record).__name__}')
    names, labels = record
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        raise ValueError(expected) from None
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ValueError(f'{expected}, found labels of type {labels.dtype} and shape {labels.shape}')
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f'{expected}, found names that are not strings')
    return list(names), labels.astype(np.int64)


class PretrainDataset(Dataset):
    """Pretraining clips: the views made by ``augment`` (a :class:`feeder.augment.ViewAugment`),
    or without it the raw clip and its length, so that the augmentation can run on the whole batch
    on the training device (batch them with :func:`collate_clips`)."""

    def __init__(self, folder, augment=None):
        self.folder, self.augment = folder, augment

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, index):
        clip = self.folder.clip(index)
        if self.augment is None:
            return clip, clip.shape[1]
        return tuple(view[0] for view in self.augment(clip[None], torch.tensor([clip.shape[1]])))


def collate_clips(batch):
    """Raw clips of different lengths -> (N, C, max n, V, M) zero-padded, and the lengths."""
    clips, lengths = zip(*batch)
    out = clips[0].new_zeros((len(clips), clips[0].shape[0], max(lengths)) + tuple(clips[0].shape[2:]))
    for i, clip in enumerate(clips):
        out[i, :, :clip.shape[1]] = clip
    return out, torch.tensor(lengths)


class DownstreamDataset(Dataset):
    """(clip, label): random 0.5-1.0 crop for training, 95% centre crop for testing; with ``whole``,
    the whole clip for both (the ST-GCN methods' linear protocol); each resized to ``frames``. Training
    clips are then turned by ``rotation`` radians at most about each axis (MAMP's protocols), where
    given."""

    def __init__(self, folder, frames=64, train=False, min_crop=None, whole=False, rotation=0.0, coordinates=None):
        self.folder, self.frames, self.train, self.whole = folder, frames, train, whole
        self.min_crop = frames if min_crop is None else min_crop
        self.rotation, self.coordinates = rotation, coordinates

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, index):
        clip = self.folder.clip(index)[None]
        n = torch.tensor([clip.shape[2]])
        if self.train and not self.whole:
            x = random_crop_resize(clip, n, self.frames, (0.5, 1.0), self.min_crop)
        else:
            x = center_crop_resize(clip, n, self.frames, 1.0 if self.whole else 0.95)
        if self.train and self.rotation:
            x = random_euler_rotation(x, self.rotation, self.coordinates)
        return x[0], int(self.folder.labels[index])
