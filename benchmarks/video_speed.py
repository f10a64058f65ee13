"""Poses from video on the CPU, frames per second in one run: decoding alone, decoding and BlazePose in
one process, ``python -m feeder.video`` over several videos in worker processes (decode, estimate,
write), and the whole video-to-timeline run (``timeline.py --video``: estimate, track, score).

    python benchmarks/video_speed.py [--videos 4] [--frames 300] [--size 640 480] [--workers 2] [--window 64]

The videos are tests/video_sample.py's (a real photograph of a person moved, scaled and tilted).
The timeline's classifier is the small-data default encoder for own data with random weights (the
cost does not depend on them) and linear heads, over the poses of the same videos. Needs
requirements-video.txt.
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import linear_eval  # noqa: E402
import timeline  # noqa: E402
from feeder import video  # noqa: E402
from feeder.raw import prepare  # noqa: E402
from feeder.raw.video import VideoError, estimate_video, import_estimator, open_capture  # noqa: E402
from recordings.model import load_classifier  # noqa: E402
from recordings.video import read_video  # noqa: E402
from recordings.windows import WindowScorer  # noqa: E402
from tests.video_sample import transforms, write_video  # noqa: E402
from utils.run import git_revision  # noqa: E402


def make_videos(folder, count, frames, size):
    """``count`` videos of ``frames`` frames, half of them tilted, with labels.csv (a train/val split)."""
    scale = 0.6 * size[1] / 600
    paths, rows = [], []
    for k in range(count):
        name = f'video{k}'
        maps = transforms(frames, shift=0.5 * size[0] / frames, scale=(scale, 0.0), tilt=30.0 * (k % 2))
        paths.append(write_video(os.path.join(folder, f'{name}.avi'), maps, size=size))
        rows.append(f'{name},{k % 2},{"val" if k >= count - 2 else "train"}\n')
    return paths, 'name,label,split\n' + ''.join(rows)


def decode_rate(path):
    capture, _, _ = open_capture(path)
    start, n = time.perf_counter(), 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n / (time.perf_counter() - start)


def build_classifier(tmp, poses, labels, window):
    with open(os.path.join(poses, 'labels.csv'), 'w') as f:
        f.write(labels)
    with contextlib.redirect_stdout(io.StringIO()):
        prepare.main(['--dataset', 'custom', '--annotations', poses, '--layout', 'mediapipe33', '--out-dir',
                      os.path.join(tmp, 'data'), '--workers', '0', '--quiet'])
        linear_eval.main(linear_eval.get_linear_parser().parse_args(
            ['--dataset', 'custom', '--data-root', os.path.join(tmp, 'data'), '--protocol', 'all', '--checkpoint',
             'random', '--stream', 'all', '--epochs', '1', '--frames', str(window), '--workers', '0', '--device',
             'cpu', '--quiet', '--output-dir', os.path.join(tmp, 'head')]))
    return os.path.join(tmp, 'head', 'heads.pth')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--videos', type=int, default=4, help='at least 4 (two of each class, two held out)')
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--size', type=int, nargs=2, default=(640, 480), metavar=('W', 'H'))
    parser.add_argument('--workers', type=int, default=os.cpu_count())
    parser.add_argument('--window', type=int, default=64)
    args = parser.parse_args()
    try:
        import_estimator()
    except VideoError as e:
        sys.exit(f'video_speed.py: {e}')
    if args.videos < 4 or args.frames < args.window:
        sys.exit('video_speed.py: --videos 4 or more, and --frames at least --window')
    print(f'revision {git_revision()}, {os.cpu_count()} cores, {torch.get_num_threads()} PyTorch threads; '
          f'{args.videos} videos of {args.frames} frames, {args.size[0]}x{args.size[1]}, MJPG')
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = make_videos(tmp, args.videos, args.frames, tuple(args.size))
        rows = [('decode (OpenCV, one process)', decode_rate(paths[0]))]
        start = time.perf_counter()
        estimate_video(paths[0])
        rows.append(('decode + BlazePose (one process)', args.frames / (time.perf_counter() - start)))

        poses = os.path.join(tmp, 'poses')
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            video.main([tmp, '--out-dir', poses, '--workers', str(args.workers), '--quiet'])
        rows.append((f'feeder.video, {args.workers} workers (decode, estimate, write)',
                     args.videos * args.frames / (time.perf_counter() - start)))

        head = build_classifier(tmp, poses, labels, args.window)
        classifier = load_classifier(head, 'cpu')
        start = time.perf_counter()
        recording = read_video(paths[0], classifier.info.layout, 2)
        estimated = time.perf_counter() - start
        windows = WindowScorer(classifier, 64).windows(recording, args.window, args.window // 4)
        scored = time.perf_counter() - estimated - start
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            timeline.main(timeline.get_timeline_parser().parse_args(['--checkpoint', head, '--video', paths[0]]))
        rows.append(('timeline.py --video (estimate, track, score)', args.frames / (time.perf_counter() - start)))
    print(f'{"stage":<50} frames/s')
    for name, rate in rows:
        print(f'{name:<50} {rate:8.1f}')
    print(f'timeline.py --video: {len(windows)} windows of {args.window} frames; estimation {estimated:.2f} s, '
          f'scoring {scored:.2f} s ({100 * estimated / (estimated + scored):.0f}% estimation)')


if __name__ == '__main__':
    main()
