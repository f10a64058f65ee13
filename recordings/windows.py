"""Windows of a recording, per tracked person, prepared as the classifier's training clips were
(docs/protocols.md, "Timelines") and scored in batches.

A window of person p holds p first and, where the dataset's clips hold two persons, the most active
other person present in the window second (by motion energy, the measure preparation selects bodies
by); a window of the whole scene, for recordings labelled as a whole (PKU-MMD), holds the most
active persons in their own order, as that dataset's training clips do. It is prepared by the steps
its dataset's ``dataset.json`` records: the published steps for the built-in 3D datasets (cyclic
padding, centring on the first person, the two turns), else the pose data steps (missed joints
filled, the recorded alignment, the normalisation), then cropped and resized as a test clip is (the
centre 95% to the encoder's frames). A window is scored where its
person holds a joint in at least ``min_presence`` of its frames.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from feeder.info import MAX_FRAMES, DatasetInfo
from feeder.raw.normalize import motion_energy, normalize_sample
from feeder.raw.pose import PosePreparation, custom_clip

MIN_PRESENCE = 0.5
SCENE = -1  # the person of a window of the whole scene


def window_starts(frames, window, stride):
    """Starts of the windows over ``frames``: every ``stride``, and one more ending at the last
    frame where the stride does not reach it."""
    starts = list(range(0, frames - window + 1, stride))
    if starts and starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


@dataclass(frozen=True)
class WindowPreparation:
    """How a window becomes a clip (C, W, V, M) of ``info``'s dataset: the pose data steps of
    ``pose``, or the published steps where it is ``None``."""
    info: DatasetInfo
    pose: PosePreparation = None

    @classmethod
    def of(cls, info):
        record = info.preparation
        if record.get('align') == 'published':
            return cls(info)
        rotation = record.get('rotation')
        return cls(info, PosePreparation(info.channels, info.persons, info.layout, record.get('fill_missing', 'linear'),
                                         record.get('align', 'none'),
                                         None if rotation is None else np.asarray(rotation, dtype=np.float64)))

    def check(self, recording, source):
        """One clear line where the recording's numbers per joint cannot make the dataset's channels."""
        channels, needed = recording.keypoint.shape[-1], 3 if self.info.channels == 'xyz' else 2
        if channels < needed or (self.info.channels == 'xys' and recording.score is None and channels < 3):
            raise ValueError(f'{source}: {channels} numbers per joint, but the classifier was trained on '
                             f'{self.info.channels} clips of {self.info.name}')

    def __call__(self, keypoint, score):
        """Persons (m, W, V, C) of one window (the window's person first) and their confidence -> (C, W, V, M)."""
        persons, frames = self.info.persons, keypoint.shape[1]
        if self.pose is None:
            full = np.zeros((persons, MAX_FRAMES) + keypoint.shape[2:3] + (3,), dtype=np.float32)
            full[:len(keypoint), :frames] = keypoint[:persons, :, :, :3]
            clip = normalize_sample(full, self.info.layout)[:, :frames]
        else:
            prepared, _ = custom_clip(keypoint, score, self.pose)
            clip = np.zeros((persons,) + prepared.shape[1:], dtype=np.float32)
            clip[:len(prepared)] = prepared[:persons]
        return clip.transpose(3, 1, 2, 0)


class Window(NamedTuple):
    person: int
    start: int
    end: int            # exclusive
    probs: np.ndarray   # (classes,)


def window_persons(recording, person, start, end, persons, present):
    """Indices of the persons in ``person``'s window: it, then the most active others present;
    for ``person`` ``SCENE``, the most active persons present in their own order."""
    others = [q for q in range(len(present)) if q != person and present[q, start:end].any()]
    kept = persons if person == SCENE else persons - 1
    if kept < 1 or not others:
        return [person] if person != SCENE else [0]
    energy = motion_energy(recording.keypoint[others, start:end])
    chosen = [others[i] for i in np.argsort(-energy, kind='stable')[:kept]]
    return sorted(chosen) if person == SCENE else [person] + chosen


class WindowScorer:
    """A trained classifier over windows (:class:`recordings.model.Classifier`): class
    probabilities, prepared and scored a batch at a time."""

    def __init__(self, classifier, batch_size):
        self.classifier, self.info, self.batch_size = classifier, classifier.info, batch_size
        self.prepare = WindowPreparation.of(self.info)

    def windows(self, recording, window, stride, min_presence=MIN_PRESENCE, scene=False):
        """Every scored :class:`Window` of ``recording``, by person then start, prepared and
        scored a batch at a time; with ``scene``, windows of the whole scene instead (person
        ``SCENE``: the most active persons in their own order, as a training clip of a recording
        labelled as a whole holds them), scored where anyone is present enough."""
        present, out, places, clips = recording.present, [], [], []
        if scene:
            present = present.any(0, keepdims=True)

        def flush():
            out.extend(Window(*place, p) for place, p in zip(places, self.classifier(np.stack(clips))))
            places.clear(), clips.clear()

        for person in range(len(present)):
            for start in window_starts(recording.frames, window, stride):
                end = start + window
                if present[person, start:end].mean() < min_presence:
                    continue
                who = SCENE if scene else person
                chosen = window_persons(recording, who, start, end, self.info.persons, recording.present)
                score = None if recording.score is None else recording.score[chosen, start:end]
                clips.append(self.prepare(recording.keypoint[chosen, start:end], score))
                places.append((who, start, end))
                if len(clips) == self.batch_size:
                    flush()
        if clips:
            flush()
        return out
