"""Recordings straight from video (``timeline.py --video`` and ``--follow`` of a video or camera,
docs/protocols.md, "Timelines"): BlazePose (:mod:`feeder.raw.video`) run here on each frame, its one
person a frame tracked as preparation tracks estimator output, in image pixels for a classifier of
2D clips and in BlazePose's world metres for one of 3D clips."""
import os
import time

from feeder.layouts import MEDIAPIPE33
from feeder.raw.video import VIDEO_SUFFIXES, Estimator, VideoError, by_person, estimate_video, open_capture
from recordings.read import Recording

# a video being written is looked at again this often once its frames are used up
POLL_SECONDS = 0.2


def check_video_layout(layout, flag):
    if layout.joint_names != MEDIAPIPE33.joint_names:
        raise ValueError(f'{flag} gives {MEDIAPIPE33.name} poses (BlazePose), but the classifier\'s layout is '
                         f'{layout.name} ({layout.num_joints} joints)')


def is_video_source(source):
    """Whether ``--follow`` names a camera (an index) or a video file rather than OpenPose frames."""
    source = str(source)
    return source.isdigit() or os.path.splitext(source)[1].lower() in VIDEO_SUFFIXES


def _detections(pose, channels):
    """A frame's detections as :class:`recordings.follow.LiveWindows` takes them: [] without a person,
    else [(image coordinates, confidence)], with the world coordinates after them for a 3D classifier
    (the person is tracked in the image either way: world coordinates are centred on the body)."""
    if pose is None:
        return []
    image, score, world = pose
    return [(image, score, world) if channels == 3 else (image, score)]


def read_video(path, layout, channels):
    """The :class:`Recording` of the video file at ``path``: every frame estimated, then tracked."""
    check_video_layout(layout, f'--video {path}')
    poses = estimate_video(path)
    keypoint, score = by_person(poses, poses.world if channels == 3 else poses.image)
    return Recording(keypoint, score, 'video')


def video_frames(source, layout, channels, idle_exit=None):
    """(arrival time, detections) of each frame of a camera (an index) or of a video file as it is
    written: at its end (or while it cannot be opened yet: a header still being written) the file
    is opened again every ``POLL_SECONDS`` and read on from the frame reached, until ``idle_exit``
    seconds pass without a new frame (a camera: until it closes)."""
    check_video_layout(layout, f'--follow {source}')
    camera = str(source).isdigit()
    if not camera and not os.path.isfile(source):
        raise FileNotFoundError(f'--follow {source}: no such video file')

    def reopen(read):
        try:
            capture = open_capture(int(source) if camera else str(source))[0]
        except VideoError:
            if camera:
                raise
            return None
        for _ in range(read):  # on to the first frame not yet read (grab decodes nothing)
            if not capture.grab():
                break
        return capture

    capture, read, waited_since = reopen(0), 0, time.perf_counter()
    with Estimator() as estimate:
        try:
            while True:
                ok, frame = capture.read() if capture is not None else (False, None)
                if ok:
                    arrived = time.perf_counter()
                    read, waited_since = read + 1, arrived
                    yield arrived, _detections(estimate(frame), channels)
                    continue
                if camera or (idle_exit is not None and time.perf_counter() - waited_since > idle_exit):
                    if capture is None:
                        raise VideoError(f'--follow {source}: not a video OpenCV can open')
                    return
                time.sleep(POLL_SECONDS)
                if capture is not None:
                    capture.release()
                capture = reopen(read)
        finally:
            if capture is not None:
                capture.release()
