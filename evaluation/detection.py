"""Temporal action detection scored as PKU-MMD scores it (Liu et al., 2017; docs/protocols.md,
"Temporal detection"): per class, detections ranked by score, each a true positive when its temporal IoU with a not yet
matched ground-truth action of its class in the same recording reaches the threshold; the class's
average precision; their mean over the classes that have ground truth."""
from collections import defaultdict


def temporal_iou(a, b):
    """IoU of two frame intervals ``(start, end)``, end exclusive."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    if overlap <= 0:
        return 0.0
    return overlap / ((a[1] - a[0]) + (b[1] - b[0]) - overlap)


def average_precision(detections, truths, threshold):
    """AP of one class: ``detections`` a list of ``(recording, start, end, score)``, ``truths``
    {recording: [(start, end), ...]}. Detections are taken by descending score (ties in the given
    order); each is matched to the unmatched truth of highest IoU, if that IoU reaches
    ``threshold``; a second detection of a matched truth is a false positive. AP is the mean, over
    the truths, of the precision at the rank where each was found (0 for one never found)."""
    total = sum(len(v) for v in truths.values())
    if not total:
        return None
    matched = {recording: [False] * len(v) for recording, v in truths.items()}
    found, precision_sum = 0, 0.0
    ranked = sorted(range(len(detections)), key=lambda i: -detections[i][3])
    for rank, i in enumerate(ranked, start=1):
        recording, start, end, _ = detections[i]
        best, best_iou = None, threshold
        for j, truth in enumerate(truths.get(recording, ())):
            iou = temporal_iou((start, end), truth)
            if not matched[recording][j] and iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            matched[recording][best] = True
            found += 1
            precision_sum += found / rank
    return precision_sum / total


def mean_average_precision(detections, truths, thresholds=(0.1, 0.3, 0.5, 0.7)):
    """{threshold: mAP} over the classes with ground truth, and {threshold: {class: AP}}.
    ``detections``: ``(recording, label, start, end, score)``; ``truths``: ``(recording, label,
    start, end)``."""
    by_class, truth_by_class = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for recording, label, start, end, score in detections:
        by_class[label].append((recording, start, end, score))
    for recording, label, start, end in truths:
        truth_by_class[label][recording].append((start, end))
    means, per_class = {}, {}
    for threshold in thresholds:
        per_class[threshold] = {label: average_precision(by_class[label], truth_by_class[label], threshold)
                                for label in sorted(truth_by_class)}
        values = list(per_class[threshold].values())
        means[threshold] = sum(values) / len(values) if values else 0.0
    return means, per_class
