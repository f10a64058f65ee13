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
from feeder.raw import prepare  # noqa: E402
from feeder.raw.untrimmed import generate_untrimmed  # noqa: E402
from recordings.detect import THRESHOLDS, evaluate_detection, pku_videos, score_videos  # noqa: E402
from recordings.model import load_classifier  # noqa: E402
from recordings.windows import MIN_PRESENCE, WindowScorer  # noqa: E402
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
        scorer = WindowScorer(classifier, 64)
        videos = pku_videos(raw, 'pku1', args.protocol, 'train')
        print(f'revision {git_revision()}; {len(videos)} training videos of {args.protocol}, {args.subjects} '
              'sessions; raw-coordinate linear head (fused)')
        print('window threshold min_duration ' + ' '.join(f'mAP@{t}' for t in THRESHOLDS) + ' frame_accuracy')
        for window in (32, 48, 64):
            scored = score_videos(videos, scorer, window, window // 4, MIN_PRESENCE)
            for threshold in (0.0, 0.3, 0.4, 0.5, 0.6):
                for min_duration in (window // 4, window // 2, window):
                    results, _ = evaluate_detection(scored, threshold, min_duration, classifier.info.class_name)
                    figures = ' '.join(f'{results[f"map@{t}"]:.1f}' for t in THRESHOLDS)
                    print(f'{window} {threshold:.1f} {min_duration} {figures} {results["frame_accuracy"]:.1f}',
                          flush=True)


if __name__ == '__main__':
    main()
