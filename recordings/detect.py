"""Temporal action detection over the untrimmed videos of PKU-MMD (docs/protocols.md, "Temporal
detection"): every video of a benchmark's part cut into windows of the whole scene (its labels
are the video's, and its training clips hold both persons) and scored, the per-frame scores turned
into segments, and the segments scored against the labelled actions: mAP at temporal IoU 0.1, 0.3,
0.5 and 0.7, and frame-level accuracy (each frame's label, an action or background, against the
truth's)."""
import os

import numpy as np

from evaluation.detection import mean_average_precision
from feeder.raw.readers import read_pku_labels, read_pku_split
from feeder.raw.sources.pku import SPLIT_FILES, find_split_file, part_of
from recordings.read import read_recording
from recordings.segments import BACKGROUND, frame_scores, segments

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)


def pku_videos(raw_dir, dataset, protocol, part):
    """[(video, skeleton file, [(label from 0, start, end)])] of one part of a PKU-MMD benchmark,
    as ``feeder.prepare`` splits it."""
    if protocol not in SPLIT_FILES[dataset]:
        raise ValueError(f'--protocol {protocol}: {dataset} has {", ".join(SPLIT_FILES[dataset])}')
    for folder in ('skeleton', 'label'):
        if not os.path.isdir(os.path.join(raw_dir, folder)):
            raise ValueError(f'--raw-dir {raw_dir}: expected a folder {folder}/ (PKU-MMD layout: skeleton/<video>.txt, '
                             'label/<video>.txt)')
    train, val = read_pku_split(find_split_file(raw_dir, SPLIT_FILES[dataset][protocol]))
    train = set(train)
    videos = []
    for file in sorted(os.listdir(os.path.join(raw_dir, 'label'))):
        video, skeleton = file[:-4], os.path.join(raw_dir, 'skeleton', file)
        if not file.endswith('.txt') or not os.path.isfile(skeleton):
            continue
        if part_of(video, train, val) == part:
            labels = read_pku_labels(os.path.join(raw_dir, 'label', file))
            truths = [(label - 1, start, end) for label, start, end in labels]
            videos.append((video, skeleton, truths))
    if not videos:
        raise ValueError(f'--raw-dir {raw_dir}: no videos in the {part} part of {protocol}')
    return videos


def truth_labels(truths, frames):
    """(T,) the labelled action of each frame, background elsewhere."""
    labels = np.full(frames, BACKGROUND, dtype=np.int64)
    for label, start, end in truths:
        labels[start:min(end, frames)] = label
    return labels


def score_videos(videos, scorer, window, stride, min_presence):
    """Each video of ``videos`` (:func:`pku_videos`) cut into scene windows and scored:
    [(video, labelled actions, per-frame scores, covered frames)]."""
    scored = []
    for video, path, labelled in videos:
        recording = read_recording(path, scorer.info.layout, fmt='pku')
        windows = scorer.windows(recording, window, stride, min_presence, scene=True)
        scored.append((video, labelled, *frame_scores(windows, recording.frames, scorer.info.num_classes)))
    return scored


def evaluate_detection(scored, threshold, min_duration, class_name):
    """The segments of scored videos (:func:`score_videos`) against their labelled actions: the
    results (mAP per threshold, frame accuracy, per-class AP) and every segment found as (video,
    start, end, label, score)."""
    detections, truths, found = [], [], []
    correct = total = 0
    for video, labelled, scores, covered in scored:
        segments_found, labels = segments(scores, covered, threshold, min_duration)
        found += [(video, *segment) for segment in segments_found]
        detections += [(video, s.label, s.start, s.end, s.score) for s in segments_found]
        truths += [(video, label, start, end) for label, start, end in labelled]
        correct += int((labels == truth_labels(labelled, len(labels))).sum())
        total += len(labels)
    means, per_class = mean_average_precision(detections, truths, THRESHOLDS)
    results = {f'map@{t}': means[t] * 100 for t in THRESHOLDS}
    results['frame_accuracy'] = correct / max(total, 1) * 100
    results['ap'] = {str(t): {class_name(c): None if ap is None else ap * 100 for c, ap in aps.items()}
                     for t, aps in per_class.items()}
    results.update(videos=len(scored), frames=total, actions=len(truths), segments=len(detections))
    return results, found


def detect_videos(videos, scorer, settings):
    """The detection run over ``videos`` (:func:`pku_videos`) with ``timeline.py``'s settings."""
    scored = score_videos(videos, scorer, settings.window, settings.stride, settings.min_presence)
    return evaluate_detection(scored, settings.threshold, settings.min_duration, scorer.info.class_name)
