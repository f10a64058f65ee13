"""Timelines on the CPU: windows scored per second, frames of a long recording per second, and the
live mode's latency, in one run.

    python benchmarks/timeline_speed.py [--frames 3000] [--fps 30] [--window 64] [--threads N]

Builds a classifier (each stream of the small-data default encoder for own data, random weights:
the cost does not depend on them, with linear heads) over synthetic OpenPose data, and a long
OpenPose recording of ``--frames`` frames (the synthetic performances one after another, two people
in some). Offline it times reading the recording (tracking included) and scoring its windows per
person. Live, a thread writes the same frames into a folder at ``--fps`` while ``timeline.py
--follow`` reads them, and the latency from each window's last frame to its line is reported.
"""
import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import linear_eval  # noqa: E402
from evaluation.heads import read_heads  # noqa: E402
from feeder.raw import prepare  # noqa: E402
from feeder.raw.synthetic import write_openpose  # noqa: E402
from recordings.follow import follow  # noqa: E402
from recordings.model import load_classifier  # noqa: E402
from recordings.read import read_recording  # noqa: E402
from recordings.windows import WindowScorer  # noqa: E402
from utils.run import git_revision  # noqa: E402


def build_classifier(tmp, window):
    """A heads.pth of random encoders over synthetic 2D data (COCO-17), its clips ``window`` frames."""
    write_openpose(os.path.join(tmp, 'clips'), classes=12, subjects=3, cameras=2, replications=1)
    prepare.main(['--dataset', 'custom', '--annotations', os.path.join(tmp, 'clips'), '--layout', 'coco17',
                  '--out-dir', os.path.join(tmp, 'data'), '--workers', '0', '--quiet'])
    linear_eval.main(linear_eval.get_linear_parser().parse_args(
        ['--dataset', 'custom', '--data-root', os.path.join(tmp, 'data'), '--protocol', 'xsub', '--checkpoint',
         'random', '--stream', 'all', '--epochs', '1', '--frames', str(window), '--workers', '0', '--device', 'cpu',
         '--quiet', '--output-dir', os.path.join(tmp, 'head')]))
    return os.path.join(tmp, 'head', 'heads.pth')


def long_recording(tmp, frames):
    """The synthetic clips' OpenPose frames renumbered one after another into one folder, to
    ``frames`` frames; returns its folder and the frame files in order."""
    source, folder = os.path.join(tmp, 'clips'), os.path.join(tmp, 'long')
    os.makedirs(folder)
    clips = sorted(d for d in os.listdir(source) if os.path.isdir(os.path.join(source, d)))
    files, t = [], 0
    while t < frames:
        for clip in clips:
            numbered = sorted(f for f in os.listdir(os.path.join(source, clip)) if f.endswith('_keypoints.json'))
            for f in numbered:
                if t == frames:
                    break
                target = os.path.join(folder, f'long_{t:012d}_keypoints.json')
                shutil.copyfile(os.path.join(source, clip, f), target)
                files.append(target)
                t += 1
    return folder, files


def write_live(files, folder, fps):
    """An estimator: the frames written into ``folder`` at ``fps`` (each renamed into place whole)."""
    start = time.perf_counter()
    for i, path in enumerate(files):
        delay = start + i / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        tmp = os.path.join(folder, '.tmp')
        shutil.copyfile(path, tmp)
        os.replace(tmp, os.path.join(folder, os.path.basename(path)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=3000)
    parser.add_argument('--fps', type=float, default=30.0)
    parser.add_argument('--window', type=int, default=64)
    parser.add_argument('--threads', type=int, default=None, help='PyTorch threads (default: its own choice)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        head = build_classifier(tmp, args.window)
        folder, files = long_recording(tmp, args.frames)
        classifier = load_classifier(head, 'cpu')
        scorer = WindowScorer(classifier, 64)
        stride = args.window // 4
        encoder = read_heads(head)['encoder'].get('encoder')
        print(f'revision {git_revision()}, {torch.get_num_threads()} PyTorch threads, {os.cpu_count()} cores; '
              f'{len(classifier.info.layout.joint_names)} joints, encoder {encoder} for each of '
              f'{len(read_heads(head)["streams"])} streams, window {args.window}, stride {stride}')

        start = time.perf_counter()
        recording = read_recording(folder, classifier.info.layout)
        read = time.perf_counter() - start
        start = time.perf_counter()
        windows = scorer.windows(recording, args.window, stride)
        scored = time.perf_counter() - start
        print(f'offline: {recording.frames} frames, {len(recording.keypoint)} tracks; read and tracked in {read:.2f} s '
              f'({recording.frames / read:.0f} frames/s); {len(windows)} windows scored in {scored:.2f} s '
              f'({len(windows) / scored:.1f} windows/s); the whole recording {recording.frames / (read + scored):.0f} '
              'frames/s')

        live = os.path.join(tmp, 'live')
        os.makedirs(live)
        writer = threading.Thread(target=write_live, args=(files, live, args.fps))
        settings = SimpleNamespace(follow=live, image_size=None, idle_exit=1.0, window=args.window, stride=stride,
                                   min_presence=0.5)
        writer.start()
        with contextlib.redirect_stdout(io.StringIO()):  # a line per window: the latencies are kept
            followed = follow(settings, scorer, classifier.info.layout)
        writer.join()
        latency = np.array(followed.latencies)
        print(f'live at {args.fps:g} frames/s: {followed.frames} frames, {len(followed.windows)} windows; latency from '
              f'a window\'s last frame to its line: median {np.median(latency):.0f} ms, 90th percentile '
              f'{np.percentile(latency, 90):.0f} ms, max {latency.max():.0f} ms')


if __name__ == '__main__':
    main()
