"""The runs that chose ``timeline.py``'s segment settings: mAP and frame accuracy on the TRAINING
videos of the synthetic untrimmed set, over windows, thresholds and minimum durations.

    python benchmarks/timeline_settings.py [--subjects 10] [--protocol xview]

Generates the untrimmed recordings (``feeder.synthetic --untrimmed``), prepares them as pku1, trains
a linear head on the prepared coordinates of the benchmark's training part (each stream, fused),
and runs the detection protocol over the training part's videos, so that nothing is chosen on the
validation part. Each window length's windows are scored once; the segment settings then vary.
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import linear_eval  # noqa: E402
from evaluation.detection import mean_average_precision  # noqa: E402
from feeder.raw import prepare  # noqa: E402
from feeder.raw.untrimmed import generate_untrimmed  # noqa: E402
from recordings.detect import THRESHOLDS, pku_videos, truth_labels  # noqa: E402
from recordings.model import load_classifier  # noqa: E402
from recordings.read import read_recording  # noqa: E402
from recordings.segments import frame_scores, segments  # noqa: E402
from recordings.windows import WindowScorer  # noqa: E402
from utils.run import git_revision  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--subjects', type=int, default=10)
    parser.add_argument('--protocol', default='xview', choices=['xsub', 'xview'])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, data, head = (os.path.join(tmp, n) for n in ('raw', 'data', 'head'))
        generate_untrimmed(raw, subjects=args.subjects)
        prepare.main(['--dataset', 'pku1', '--raw-dir', raw, '--out-dir', data, '--workers', '0', '--quiet'])
        linear_eval.main(linear_eval.get_linear_parser().parse_args(
            ['--dataset', 'pku1', '--data-root', data, '--protocol', args.protocol, '--checkpoint', 'raw', '--stream',
             'all', '--workers', '0', '--device', 'cpu', '--quiet', '--output-dir', head]))
        classifier = load_classifier(os.path.join(head, 'heads.pth'), 'cpu')
        scorer, classes = WindowScorer(classifier, 64), classifier.info.num_classes
        videos = pku_videos(raw, 'pku1', args.protocol, 'train')
        print(f'revision {git_revision()}; {len(videos)} training videos of {args.protocol}, {args.subjects} '
              'sessions; raw-coordinate linear head (fused)')
        print('window threshold min_duration ' + ' '.join(f'mAP@{t}' for t in THRESHOLDS) + ' frame_accuracy')
        for window in (32, 48, 64):
            scored = []
            for video, path, truths in videos:
                recording = read_recording(path, classifier.info.layout, fmt='pku')
                windows = scorer.windows(recording, window, window // 4, scene=True)
                scored.append((video, truths, frame_scores(windows, recording.frames, classes), recording.frames))
            for threshold in (0.0, 0.3, 0.4, 0.5, 0.6):
                for min_duration in (window // 4, window // 2, window):
                    detections, truth, correct, total = [], [], 0, 0
                    for video, truths, (scores, covered), frames in scored:
                        found, labels = segments(scores, covered, threshold, min_duration)
                        detections += [(video, s.label, s.start, s.end, s.score) for s in found]
                        truth += [(video, label, start, end) for label, start, end in truths]
                        correct += int((labels == truth_labels(truths, frames)).sum())
                        total += frames
                    means, _ = mean_average_precision(detections, truth, THRESHOLDS)
                    figures = ' '.join(f'{means[t] * 100:.1f}' for t in THRESHOLDS)
                    print(f'{window} {threshold:.1f} {min_duration} {figures} {correct / total * 100:.1f}', flush=True)


if __name__ == '__main__':
    main()
