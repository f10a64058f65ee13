"""Temporal detection (docs/protocols.md, "Temporal detection"): the score against hand-computed cases."""
import pytest

from evaluation.detection import average_precision, mean_average_precision, temporal_iou


def test_temporal_iou_is_the_overlap_over_the_union():
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 10), (10, 20)) == 0.0 and temporal_iou((0, 10), (30, 40)) == 0.0
    assert temporal_iou((2, 4), (0, 10)) == pytest.approx(2 / 10)


def test_perfect_detections_score_one_at_every_threshold():
    truths = [('a', 0, 0, 50), ('a', 1, 60, 100), ('b', 0, 10, 40)]
    detections = [(r, c, s, e, 0.9) for r, c, s, e in truths]
    means, per_class = mean_average_precision(detections, truths)
    assert means == {0.1: 1.0, 0.3: 1.0, 0.5: 1.0, 0.7: 1.0} and per_class[0.5] == {0: 1.0, 1: 1.0}


def test_a_shifted_detection_is_lost_at_the_iou_it_crosses():
    truths = [('a', 0, 0, 100)]
    shifted = [('a', 0, 40, 140, 0.9)]  # IoU 60 / 140 = 0.43
    means, _ = mean_average_precision(shifted, truths)
    assert means == {0.1: 1.0, 0.3: 1.0, 0.5: 0.0, 0.7: 0.0}
    wrong_class = [('a', 1, 0, 100, 0.9)]
    assert mean_average_precision(wrong_class, truths)[0][0.1] == 0.0
    wrong_recording = [('b', 0, 0, 100, 0.9)]
    assert mean_average_precision(wrong_recording, truths)[0][0.1] == 0.0


def test_duplicates_are_false_positives_and_ranks_count():
    truths = {'a': [(0, 50), (100, 150)]}
    # ranked: the first truth (TP), the same again (FP), the second truth (TP): (1/1 + 2/3) / 2
    detections = [('a', 0, 50, 0.9), ('a', 2, 50, 0.8), ('a', 100, 150, 0.7)]
    assert average_precision(detections, truths, 0.5) == pytest.approx((1 + 2 / 3) / 2)
    # the duplicate after both truths costs nothing; a truth never found counts as 0
    assert average_precision(detections[:2] + [('a', 100, 150, 0.95)], truths, 0.5) == pytest.approx(1.0)
    assert average_precision([detections[0]], truths, 0.5) == pytest.approx(0.5)
    assert average_precision(detections, {}, 0.5) is None  # a class without truth is not averaged
    # a detection matches the unmatched truth it overlaps most
    close = {'a': [(0, 100), (90, 190)]}
    assert average_precision([('a', 85, 185, 0.9), ('a', 0, 95, 0.8)], close, 0.7) == pytest.approx(1.0)
