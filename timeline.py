"""A timeline of actions per person in a long recording, from a trained classifier (docs/protocols.md,
"Timelines").

    python timeline.py --checkpoint OUT/heads.pth --recording PATH [--layout L] [--window W --stride S] \\
        --out windows.csv --segments segments.csv --plot timeline.png
    python timeline.py --checkpoint OUT/heads.pth --dataset pku1 --raw-dir RAW --protocol xsub --part val \\
        --out-dir DIR
    python timeline.py --checkpoint OUT/heads.pth --video FILE [--out windows.csv --segments ...]
    python timeline.py --checkpoint OUT/heads.pth --follow FOLDER|-|VIDEO|CAMERA [--out windows.csv]

``--checkpoint``: the ``heads.pth`` of ``linear_eval.py`` or ``finetune.py``, or the file
``export.py`` made of one. ``--recording``: an OpenPose folder of one video, a Kinetics-skeleton
JSON, a ``.npy`` (T, V, C) or (M, T, V, C), a pyskl pickle of one annotation, an NTU ``.skeleton``
or a PKU-MMD skeleton ``.txt``. Windows of ``--window`` frames every ``--stride`` (default: the
classifier's frames and a quarter of them), per tracked person, are prepared as the classifier's
training clips were and scored; ``windows.csv`` has ``person,start,end,pred1,prob1,...,pred5,prob5``
(frames of the recording, end exclusive); ``segments.csv`` ``person,start,end,label,score``. The
second form scores the PKU-MMD detection protocol into ``DIR/results.json``. ``--video`` estimates the
poses of a video file here (BlazePose, ``requirements-video.txt``; a ``mediapipe33`` classifier) and
scores them as a recording. ``--follow`` reads OpenPose frames as an estimator writes them into
FOLDER (or JSON lines on standard input), or estimates the frames of a video file as it grows or of
a camera (its index), and prints a line per window as soon as its last frame arrives.
"""
import argparse
import json
import os

from feeder.info import MAX_FRAMES
from feeder.layouts import get_layout
from feeder.raw.readers import read_pku_labels
from feeder.raw.sources.pku import SPLIT_FILES
from options.args import positive_int, settle_device
from options.settings import Resolution
from recordings.detect import detect_videos, pku_videos
from recordings.follow import follow
from recordings.model import load_classifier
from recordings.read import RECORDING_FORMATS, read_recording
from recordings.segments import person_scores, segments
from recordings.video import read_video
from recordings.windows import MIN_PRESENCE, WindowScorer
from utils.io import csv_text, write_text_atomic
from utils.plots import save_timeline
from utils.run import announce, run_cli

TOP = 5
THRESHOLD = 0.0
BATCH_SIZE = 64


def get_timeline_parser():
    parser = argparse.ArgumentParser('CMD timeline', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='a heads.pth, or the ONNX/TorchScript file export.py made')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--recording', help='one recording (see above)')
    source.add_argument('--raw-dir', help='PKU-MMD in its own layout (skeleton/, label/, split files): the detection '
                                          'protocol')
    source.add_argument('--video', help='a video file: its poses estimated here (BlazePose), then scored as a '
                                        'recording')
    source.add_argument('--follow', help='a folder an estimator writes OpenPose frames into, - for JSON lines of '
                                         'frames on standard input, or a video file as it is written or a camera '
                                         'index, whose poses are estimated here')
    parser.add_argument('--layout', default=None, help="the recording's skeleton layout (default: the classifier's; "
                                                        'checked against it)')
    parser.add_argument('--format', default=None, choices=RECORDING_FORMATS, help='the recording\'s format (default: '
                                                                                  'from what it is)')
    parser.add_argument('--image-size', type=positive_int, nargs=2, metavar=('W', 'H'), default=None,
                        help='JSON coordinates divided by the image size are multiplied back (default: what the '
                             "classifier's dataset recorded)")
    parser.add_argument('--window', type=positive_int, default=None,
                        help="frames per window (default: the classifier's)")
    parser.add_argument('--stride', type=positive_int, default=None, help='frames between windows (default: a quarter '
                                                                          'window)')
    parser.add_argument('--min-presence', type=float, default=None,
                        help=f'a window is scored where its person is present in this share of its frames '
                             f'(default {MIN_PRESENCE})')
    parser.add_argument('--threshold', type=float, default=None,
                        help=f"a frame is background where its likeliest class's score is below this (default "
                             f"{THRESHOLD})")
    parser.add_argument('--min-duration', type=positive_int, default=None,
                        help='shorter runs of a label are merged into a neighbour (default: a quarter window)')
    parser.add_argument('--out', default=None, help='windows.csv to write')
    parser.add_argument('--segments', default=None, help='segments.csv to write')
    parser.add_argument('--plot', default=None, help='timeline.png to draw')
    parser.add_argument('--truth', default=None, help='with --plot: the recording\'s labelled actions, drawn as a band '
                                                      'above (a PKU-MMD label file: class from 1,start,end per line)')
    parser.add_argument('--dataset', default='pku1', choices=list(SPLIT_FILES), help='with --raw-dir')
    parser.add_argument('--protocol', default='xsub', help='with --raw-dir: xsub or xview')
    parser.add_argument('--part', default='val', choices=['train', 'val'], help='with --raw-dir')
    parser.add_argument('--out-dir', default=None, help='with --raw-dir: where results.json and segments.csv go')
    parser.add_argument('--idle-exit', type=float, default=None,
                        help='with --follow FOLDER or VIDEO: stop after this many seconds without a new frame '
                             '(default: run until interrupted)')
    parser.add_argument('--batch-size', type=positive_int, default=None, help=f'windows scored at once (default '
                                                                              f'{BATCH_SIZE})')
    parser.add_argument('--device', default=None, choices=['cuda', 'cpu'])
    return parser


def resolve(args, classifier, device):
    """The settings, each with its source: the command line, a default, or the classifier."""
    resolution = Resolution(args)
    resolution.layer(dict(min_presence=MIN_PRESENCE, threshold=THRESHOLD, batch_size=BATCH_SIZE), 'default')
    resolution.set('device', device, 'command line' if args.device else 'default')
    resolution.layer({'window': classifier.frames}, "the classifier's frames")
    values = resolution.values
    resolution.layer({'stride': max(1, values['window'] // 4), 'min_duration': max(1, values['window'] // 4)},
                     'a quarter window')
    if classifier.info.preparation.get('image_size'):
        resolution.layer({'image_size': classifier.info.preparation['image_size']}, "classifier's dataset")
    for key in ('min_presence', 'threshold'):
        if not 0 <= values[key] <= 1:
            raise ValueError(f'--{key.replace("_", "-")} {values[key]}: expected a number between 0 and 1')
    if values['window'] > MAX_FRAMES:
        raise ValueError(f'--window {values["window"]}: at most {MAX_FRAMES} frames, the longest clip preparation '
                         'stores')
    return resolution.settings()


def check_layout(args, info):
    """The classifier's layout; ``--layout`` must name the same."""
    if args.layout is None:
        return info.layout
    layout = get_layout(args.layout)
    if layout.joint_names != info.layout.joint_names:
        raise ValueError(f'--layout {args.layout} ({layout.num_joints} joints) does not match the classifier\'s '
                         f'layout {info.layout.name} ({info.layout.num_joints} joints)')
    return layout


def window_rows(windows, class_name):
    """``person,start,end,pred1,prob1,...``: the likeliest classes of each window."""
    for window in windows:
        top = window.probs.argsort()[::-1][:TOP]
        cells = [x for c in top for x in (class_name(c), f'{window.probs[c]:.6f}')]
        yield [window.person, window.start, window.end] + cells + [''] * (2 * TOP - len(cells))


WINDOW_HEADER = ['person', 'start', 'end'] + [f'{c}{i}' for i in range(1, TOP + 1) for c in ('pred', 'prob')]


def recording_timeline(args, scorer):
    info = scorer.info
    layout = check_layout(args, info)
    if args.video:
        flag, source = '--video', args.video
        recording = read_video(args.video, layout, info.coordinates)
    else:
        flag, source = '--recording', args.recording
        recording = read_recording(args.recording, layout, args.format, args.image_size,
                                   colour=info.channels != 'xyz')
    scorer.prepare.check(recording, f'{flag} {source}')
    if recording.frames < args.window:
        raise ValueError(f'{flag} {source}: {recording.frames} frames, shorter than one window '
                         f'(--window {args.window})')
    windows = scorer.windows(recording, args.window, args.stride, args.min_presence)
    print(f'{source}: {recording.frames} frames, {len(recording.keypoint)} tracked '
          f'person{"s" if len(recording.keypoint) > 1 else ""}, {len(windows)} windows scored')
    return write_outputs(args, windows, recording.frames, info, os.path.basename(source))


def write_outputs(args, windows, frames, info, title):
    """Each person's segments printed, and what ``--out``, ``--segments`` and ``--plot`` ask for."""
    by_person = {person: segments(scores, covered, args.threshold, args.min_duration)[0]
                 for person, (scores, covered) in person_scores(windows, frames, info.num_classes).items()}
    for person, found in by_person.items():
        print(f'person {person}: ' + (', '.join(f'{info.class_name(s.label)} {s.start}-{s.end}' for s in found)
                                      or 'no action'))
    if args.out:
        write_text_atomic(args.out, csv_text(WINDOW_HEADER, window_rows(windows, info.class_name)))
        print(f'wrote {args.out}')
    if args.segments:
        rows = [[p, s.start, s.end, info.class_name(s.label), f'{s.score:.6f}']
                for p, found in by_person.items() for s in found]
        write_text_atomic(args.segments, csv_text(['person', 'start', 'end', 'label', 'score'], rows))
        print(f'wrote {args.segments}')
    if args.plot:
        truth = None
        if args.truth:
            truth = [(start, end, label - 1, 1.0) for label, start, end in read_pku_labels(args.truth)]
        save_timeline(args.plot, by_person, frames, info.class_name, title, truth)
        print(f'wrote {args.plot}')
    return windows, by_person


def detection(args, scorer):
    if not args.out_dir or (os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir)):
        raise ValueError(f'--out-dir {args.out_dir}: --raw-dir needs a folder, where results.json and segments.csv go')
    info = scorer.info
    if info.layout.num_joints != 25 or info.channels != 'xyz':
        raise ValueError(f'--checkpoint {args.checkpoint} classifies {info.name} clips ({info.layout.name}, '
                         f'{info.channels}); PKU-MMD recordings are ntu25 xyz')
    videos = pku_videos(args.raw_dir, args.dataset, args.protocol, args.part)
    print(f'{len(videos)} videos in the {args.part} part of {args.dataset} {args.protocol}')
    results, found = detect_videos(videos, scorer, args)
    results = {**results, 'checkpoint': args.checkpoint, 'dataset': args.dataset, 'protocol': args.protocol,
               'part': args.part, 'settings': {k: getattr(args, k) for k in SETTINGS},
               'sources': {k: args.sources[k] for k in SETTINGS}}
    os.makedirs(args.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(args.out_dir, 'results.json'), json.dumps(results, indent=1))
    write_text_atomic(os.path.join(args.out_dir, 'segments.csv'),
                      csv_text(['video', 'start', 'end', 'label', 'score'],
                               [[v, s, e, info.class_name(c), f'{p:.6f}'] for v, s, e, c, p in found]))
    print(' '.join(f'mAP@{t} {results[f"map@{t}"]:.2f}' for t in (0.1, 0.3, 0.5, 0.7))
          + f', frame accuracy {results["frame_accuracy"]:.2f}')
    print(f'wrote {os.path.join(args.out_dir, "results.json")}')
    return results


SETTINGS = ('window', 'stride', 'min_presence', 'threshold', 'min_duration')


def main(args):
    for flag in ('out', 'segments', 'plot'):
        path = getattr(args, flag)
        if path and os.path.isdir(path):
            raise ValueError(f'--{flag} {path} is a folder; expected a file to write')
    device = settle_device(args.device)
    classifier = load_classifier(args.checkpoint, device)
    args = resolve(args, classifier, device)
    announce(args)
    scorer = WindowScorer(classifier, args.batch_size)
    if args.raw_dir:
        return detection(args, scorer)
    if args.follow:
        followed = follow(args, scorer, check_layout(args, scorer.info))
        if not followed.frames:
            return [], {}
        return write_outputs(args, followed.windows, followed.frames, scorer.info, f'--follow {args.follow}')
    return recording_timeline(args, scorer)


if __name__ == '__main__':
    run_cli(main, get_timeline_parser())
