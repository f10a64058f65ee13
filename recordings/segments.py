"""From scored windows to per-frame scores and segments (docs/protocols.md, "Timelines").

A frame's class scores are the mean of the probabilities of the scored windows that cover it. Its
label is the likeliest class, or background (-1) where no window covers it or that class's score is
below the threshold. Runs of one label shorter than the minimum duration are then merged away,
shortest first (the earlier of equals): such a run takes the label of its longer neighbour (the
earlier on a tie), until every run lasts the minimum or one run is left. Each remaining run of a
class is a segment, scored by the mean of that class's score over its frames.
"""
from typing import NamedTuple

import numpy as np

BACKGROUND = -1


class Segment(NamedTuple):
    start: int
    end: int      # exclusive
    label: int
    score: float


def frame_scores(windows, frames, classes):
    """(T, classes) mean probabilities of the windows covering each frame (0 where none does), and
    which frames are covered (T,)."""
    total, count = np.zeros((frames, classes)), np.zeros(frames)
    for window in windows:
        total[window.start:window.end] += window.probs
        count[window.start:window.end] += 1
    return total / np.maximum(count, 1)[:, None], count > 0


def frame_labels(scores, covered, threshold):
    """Each frame's likeliest class, background where uncovered or below ``threshold``."""
    labels = scores.argmax(1)
    labels[~covered | (scores.max(1) < threshold)] = BACKGROUND
    return labels


def runs(labels):
    """[(label, start, end)] of the maximal runs of equal labels."""
    if not len(labels):
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.concatenate([[0], edges]), np.concatenate([edges, [len(labels)]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def smooth(labels, min_duration):
    """``labels`` with the runs shorter than ``min_duration`` merged away (the module's rule)."""
    spans = [list(run) for run in runs(labels)]
    while len(spans) > 1:
        short = [i for i, (_, s, e) in enumerate(spans) if e - s < min_duration]
        if not short:
            break
        i = min(short, key=lambda k: (spans[k][2] - spans[k][1], k))
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(spans)]
        j = max(neighbours, key=lambda k: (spans[k][2] - spans[k][1], -k))
        spans[i][0] = spans[j][0]
        merged = [spans[0]]
        for span in spans[1:]:
            if span[0] == merged[-1][0]:
                merged[-1][2] = span[2]
            else:
                merged.append(span)
        spans = merged
    out = np.empty(len(labels), dtype=np.int64)
    for label, s, e in spans:
        out[s:e] = label
    return out


def segments(scores, covered, threshold, min_duration):
    """The :class:`Segment` list of per-frame ``scores`` (T, classes), and the frame labels it
    comes from (after smoothing)."""
    labels = smooth(frame_labels(scores, covered, threshold), min_duration)
    found = [Segment(s, e, label, float(scores[s:e, label].mean())) for label, s, e in runs(labels)
             if label != BACKGROUND]
    return found, labels


def person_scores(windows, frames, classes):
    """{person: (scores, covered)} of :func:`frame_scores` for each person with scored windows."""
    by_person = {}
    for window in windows:
        by_person.setdefault(window.person, []).append(window)
    return {person: frame_scores(w, frames, classes) for person, w in sorted(by_person.items())}

