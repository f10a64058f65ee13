"""``python -m feeder.video VIDEOS --out-dir POSES``: poses from videos, one file per video in a folder
that ``feeder.prepare --dataset custom --annotations POSES --layout mediapipe33`` reads as it is
(docs/data.md, "Videos"; the estimator in :mod:`feeder.raw.video`).

VIDEOS is one video file or a folder of them; a folder of class folders (``VIDEOS/wave/a.mp4``) also
gets ``labels.csv`` and ``classes.txt``. ``--coordinates image`` (the default) writes ``NAME.json``,
Kinetics-skeleton in pixels with each landmark's visibility; ``world`` adds ``NAME.npy`` (1, T, 33, 3),
BlazePose's metres, which preparation then reads as 3D clips. Each file records the video's frame
rate and size. A rerun skips the videos already done."""
import argparse
import os
import sys
from multiprocessing import TimeoutError, get_context
from multiprocessing.pool import ThreadPool

from tqdm import tqdm

from feeder.raw.video import (COORDINATES, VIDEO_SUFFIXES, VideoError, estimate_video, finished, import_estimator,
                              open_capture, write_poses)
from utils.io import WriteError, csv_text, write_text_atomic


def _is_video(name):
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def list_videos(path):
    """[(name, path, class or None)] of ``path``: a video file, a folder of videos, or a folder of
    class folders of videos; the error where it holds none or two videos share a name."""
    if os.path.isfile(path):
        return [(os.path.splitext(os.path.basename(path))[0], path, None)]
    if not os.path.isdir(path):
        raise VideoError(f'{path}: no such file or folder')
    videos = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if os.path.isfile(full) and _is_video(entry):
            videos.append((os.path.splitext(entry)[0], full, None))
        elif os.path.isdir(full):
            videos += [(os.path.splitext(f)[0], os.path.join(full, f), entry) for f in sorted(os.listdir(full))
                       if _is_video(f) and os.path.isfile(os.path.join(full, f))]
    if not videos:
        raise VideoError(f'{path}: holds no video ({", ".join(VIDEO_SUFFIXES)}), directly or in class folders')
    seen = {}
    for name, file, _ in videos:
        if name in seen:
            raise VideoError(f'{path}: two videos are named {name}: {seen[name]} and {file}')
        seen[name] = file
    if any(label is not None for _, _, label in videos) and any(label is None for _, _, label in videos):
        raise VideoError(f'{path}: holds videos both directly and in class folders; expected one or the other')
    return videos


def write_labels(out_dir, videos):
    """``labels.csv`` and ``classes.txt`` of class-folder videos (classes in sorted order)."""
    classes = sorted({label for _, _, label in videos})
    write_text_atomic(os.path.join(out_dir, 'classes.txt'), ''.join(f'{c}\n' for c in classes))
    write_text_atomic(os.path.join(out_dir, 'labels.csv'),
                      csv_text(['name', 'label'], [[name, classes.index(label)] for name, _, label in videos]))


def estimate_one(task):
    """One video into ``out_dir`` (in a worker): (name, frames, frames with a person, error or None);
    its frames are counted into the progress queue as they are done."""
    name, path, out_dir, coordinates, min_visibility = task
    pending = [0]  # frames not yet counted

    def on_frame():
        pending[0] += 1
        if pending[0] == PROGRESS_FRAMES:
            _progress.put(pending[0])
            pending[0] = 0

    try:
        poses = estimate_video(path, min_visibility, on_frame if _progress is not None else None)
        write_poses(out_dir, name, poses, path, coordinates)
    except (VideoError, WriteError) as e:
        return name, 0, 0, str(e)
    finally:
        if _progress is not None and pending[0]:
            _progress.put(pending[0])
    return name, poses.frames, poses.found, None


# frames a worker counts before it tells the progress bar
PROGRESS_FRAMES = 10
_progress = None  # in a worker, or in this process without workers: the queue of frames done


def start_worker(queue, quiet):
    """A worker's start: the progress queue; where ``quiet`` (a worker process, which returns its
    errors) its standard error, where the estimator's threads log, to /dev/null."""
    global _progress
    _progress = queue
    if quiet:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)


def declared_frames(path):
    """The frame count a video's header declares (0 where it cannot be opened: the worker says why)."""
    try:
        capture = open_capture(path)[0]
    except VideoError:
        return 0
    count = int(capture.get(import_estimator()[0].CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    return max(count, 0)


def check_out_dir(out_dir, coordinates):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise VideoError(f'--out-dir {out_dir} is a file, not a folder')
    if coordinates == 'image' and os.path.isdir(out_dir) and any(f.endswith('.npy') for f in os.listdir(out_dir)):
        raise VideoError(f'--out-dir {out_dir} holds world coordinates (.npy) of a --coordinates world run; '
                         'preparation would read those: use another folder')


def run(args):
    """Every video not yet done, in parallel processes, with a progress bar of frames; returns (videos
    done now, frames, frames with a person, [a line per bad video left out])."""
    import_estimator()
    videos = list_videos(args.videos)
    check_out_dir(args.out_dir, args.coordinates)
    os.makedirs(args.out_dir, exist_ok=True)
    todo = [(name, path, args.out_dir, args.coordinates, args.min_visibility) for name, path, _ in videos
            if not finished(args.out_dir, name, args.coordinates)]
    if len(todo) < len(videos):
        print(f'{len(videos) - len(todo)} of {len(videos)} videos already done in {args.out_dir}: skipped')
    bad, frames, found = [], 0, 0
    progress = tqdm(total=sum(declared_frames(task[1]) for task in todo) if not args.quiet else 0, unit='frame',
                    desc=f'estimate poses of {len(todo)} video(s)', disable=args.quiet, file=sys.stdout)
    workers = max(1, min(args.workers, len(todo)))
    # spawn: each worker loads its own estimator (a forked TFLite runtime is not safe to share)
    context = get_context('spawn')
    queue = context.SimpleQueue() if not args.quiet else None
    if workers > 1:
        pool = context.Pool(workers, initializer=start_worker, initargs=(queue, True))
    else:  # one video, or --workers 1: a thread of this process
        pool = ThreadPool(1, initializer=start_worker, initargs=(queue, False))
    try:
        with pool:
            results = pool.imap_unordered(estimate_one, todo)
            for _ in range(len(todo)):
                name, n, seen, error = _next_result(results, queue, progress)
                if error is not None:
                    if not args.skip_bad:
                        raise VideoError(f'{error}; the videos done are kept, rerun with --skip-bad to leave it out')
                    bad.append((name, error))
                frames, found = frames + n, found + seen
        _count_progress(queue, progress)
    finally:
        start_worker(None, False)
        progress.close()
    if any(label is not None for _, _, label in videos):
        left_out = {name for name, _ in bad}
        write_labels(args.out_dir, [video for video in videos if video[0] not in left_out])
    return len(todo) - len(bad), frames, found, [error for _, error in bad]


def _count_progress(queue, progress):
    while queue is not None and not queue.empty():
        progress.update(queue.get())


def _next_result(results, queue, progress):
    """The next video's result, the progress bar moved on by the frames done meanwhile."""
    while True:
        try:
            result = results.next(timeout=0.2)
        except TimeoutError:
            result = None
        _count_progress(queue, progress)
        if result is not None:
            return result


def get_args_parser():
    parser = argparse.ArgumentParser('python -m feeder.video', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('videos', help='a video file, a folder of videos, or a folder of class folders of videos')
    parser.add_argument('--out-dir', required=True, help='where the pose files go (one per video)')
    parser.add_argument('--coordinates', default='image', choices=COORDINATES,
                        help='image: pixels with visibility (NAME.json, 2D); world: also BlazePose\'s metres '
                             '(NAME.npy, 3D), which preparation then reads')
    parser.add_argument('--min-visibility', type=float, default=0.0,
                        help='landmarks less visible than this get confidence 0, filled by preparation as missed '
                             'joints are (default 0: every landmark kept with its visibility)')
    parser.add_argument('--workers', type=int, default=os.cpu_count(), help='videos estimated at once')
    parser.add_argument('--skip-bad', action='store_true',
                        help='leave out videos that cannot be decoded (named at the end) instead of stopping')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    try:
        if not 0 <= args.min_visibility <= 1:
            raise VideoError(f'--min-visibility {args.min_visibility}: expected a number between 0 and 1')
        done, frames, found, bad = run(args)
    except (VideoError, WriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{done} video(s) estimated, {frames} frames, a person found in {found}; poses in {args.out_dir}')
    for line in bad:
        print(f'left out: {line}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
