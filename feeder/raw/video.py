"""Poses from videos (docs/data.md, "Videos"): frames decoded by OpenCV, BlazePose (MediaPipe Pose, whose
model ships inside the ``mediapipe`` package: nothing is downloaded) run on each, one person a frame
in the 33 landmarks of the ``mediapipe33`` layout: image coordinates in pixels with each landmark's
visibility as its confidence, and world coordinates in metres (centred between the hips). A frame
without a person has confidence 0 everywhere, which preparation treats as it treats missed joints.

mediapipe and OpenCV are optional (``requirements-video.txt``); nothing else in the project imports
this module, and it imports them only when a video is read."""
import contextlib
import json
import os
import sys
import warnings
from typing import NamedTuple

import numpy as np

from feeder.raw.tracking import link_tracks
from utils.io import write_atomic, write_text_atomic

INSTALL = 'pip install -r requirements-video.txt'
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv', '.ts', '.3gp')
LANDMARKS = 33
COORDINATES = ('image', 'world')
# some containers' headers only estimate their frame count; a file that decodes to less than this
# share of it is taken as cut short
TRUNCATED = 0.9
# Kinetics-skeleton keeps what the estimator resolves: a hundredth of a pixel, a ten-thousandth of visibility
PIXEL_DECIMALS, SCORE_DECIMALS = 2, 4


class VideoError(ValueError):
    """A video that cannot be read, or an estimator that is not installed, said in one line."""


def import_estimator():
    """(cv2, mediapipe), or the one line that says what to install. Their own logging (FFmpeg, a
    protobuf deprecation) is kept to errors: a run prints the project's lines."""
    for name, level in (('OPENCV_LOG_LEVEL', 'ERROR'), ('OPENCV_FFMPEG_LOGLEVEL', '-8')):
        os.environ.setdefault(name, level)
    warnings.filterwarnings('ignore', message='SymbolDatabase.GetPrototype', category=UserWarning)
    try:
        import cv2
        import mediapipe
    except ImportError as e:
        raise VideoError(f'video input needs mediapipe and OpenCV ({e.name} is not installed): {INSTALL}') from None
    return cv2, mediapipe


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 sent to /dev/null for the block: what C++ libraries print there directly
    (the estimator's start-up lines)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved), os.close(null)


class VideoPoses(NamedTuple):
    """One video's poses, one person a frame; every array is 0 where no person was found."""
    image: np.ndarray  # (T, 33, 2) float32 pixels, x to the right, y down
    score: np.ndarray  # (T, 33) float32 visibility in [0, 1]
    world: np.ndarray  # (T, 33, 3) float32 metres, centred between the hips
    fps: float
    width: int
    height: int

    @property
    def frames(self):
        return len(self.score)

    @property
    def found(self):
        """Frames with a person."""
        return int((self.score > 0).any(-1).sum())


class Estimator:
    """BlazePose (the full model, the one the package ships) on the frames of one video in order: it
    tracks the person from frame to frame, so one estimator serves one video. A landmark whose
    visibility is below ``min_visibility`` gets confidence 0 (a missed joint)."""

    def __init__(self, min_visibility=0.0):
        self.cv2, mediapipe = import_estimator()
        self.min_visibility = min_visibility
        with quiet_stderr():
            self.pose = mediapipe.solutions.pose.Pose(static_image_mode=False, model_complexity=1,
                                                      smooth_landmarks=True)
        self.started = False

    def __call__(self, frame):
        """The pose in one BGR frame (H, W, 3) uint8: (xy (33, 2) pixels, confidence (33,), world (33, 3)),
        or ``None`` where there is no person."""
        rgb = self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2RGB)
        if self.started:
            result = self.pose.process(rgb)
        else:
            with quiet_stderr():  # the graph's start-up log lines (TensorFlow Lite, absl), printed from C++
                result = self.pose.process(rgb)
            self.started = True
        if result.pose_landmarks is None:
            return None
        height, width = frame.shape[:2]
        image = np.array([(p.x * width, p.y * height, p.visibility) for p in result.pose_landmarks.landmark],
                         dtype=np.float32)
        world = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark], dtype=np.float32)
        score = np.where(image[:, 2] >= self.min_visibility, image[:, 2], 0).astype(np.float32)
        return image[:, :2], score, world

    def close(self):
        self.pose.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_capture(source):
    """An OpenCV capture of a file (or a camera index), with (fps, width, height), or the error."""
    cv2, _ = import_estimator()
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise VideoError(f'{source}: not a video OpenCV can open')
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return capture, (float(fps) if fps and np.isfinite(fps) else 0.0), size


def estimate_video(path, min_visibility=0.0, on_frame=None):
    """:class:`VideoPoses` of the video file at ``path``; ``on_frame()`` is called after each frame
    (progress). A file that opens but yields no frame, or stops well short of the frames its header
    declares (a truncated file), is an error, not a short clip."""
    capture, fps, (width, height) = open_capture(path)
    declared = int(capture.get(import_estimator()[0].CAP_PROP_FRAME_COUNT) or 0)
    image, score, world = [], [], []
    try:
        with Estimator(min_visibility) as estimate:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                pose = estimate(frame)
                if pose is None:
                    pose = (np.zeros((LANDMARKS, 2), np.float32), np.zeros(LANDMARKS, np.float32),
                            np.zeros((LANDMARKS, 3), np.float32))
                image.append(pose[0]), score.append(pose[1]), world.append(pose[2])
                height, width = frame.shape[:2]
                if on_frame is not None:
                    on_frame()
    finally:
        capture.release()
    if not score:
        raise VideoError(f'{path}: no frame could be decoded (an empty, truncated or non-video file)')
    if len(score) < TRUNCATED * declared:
        raise VideoError(f'{path}: decoding stopped at frame {len(score)} of the {declared} its header declares '
                         '(a truncated file?)')
    return VideoPoses(np.stack(image), np.stack(score), np.stack(world), fps, width, height)


def video_record(poses, source):
    """What is known of the video itself, stored beside its poses."""
    return {'source': os.path.abspath(source), 'fps': round(poses.fps, 4), 'width': poses.width,
            'height': poses.height, 'frames': poses.frames, 'frames_with_person': poses.found,
            'estimator': 'mediapipe BlazePose full (model_complexity 1)', 'layout': 'mediapipe33'}


def kinetics_json(poses, source):
    """The Kinetics-skeleton record (docs/data.md, "Pose estimator output") of ``poses`` in pixels,
    every frame listed (a frame without a person has no skeleton), and the video's own record."""
    data = []
    for t in range(poses.frames):
        skeleton = []
        if poses.score[t].any():
            skeleton.append({'pose': np.round(poses.image[t].reshape(-1), PIXEL_DECIMALS).tolist(),
                             'score': np.round(poses.score[t], SCORE_DECIMALS).tolist()})
        data.append({'frame_index': t, 'skeleton': skeleton})
    return {'data': data, 'video': video_record(poses, source)}


def frame_tracks(poses):
    """Each frame's person (-1 where nobody was found): the detections linked in image coordinates by
    the tracker preparation uses (docs/data.md, "Pose estimator output"), so that where BlazePose
    loses its person and takes up another (a jump of the body by more than half its size, or more
    than 10 frames away) a new person begins."""
    frames = [[(poses.image[t], poses.score[t])] if poses.score[t].any() else [] for t in range(poses.frames)]
    track = np.full(poses.frames, -1)
    for m, detections in enumerate(link_tracks(frames)):
        for t, _, _ in detections:
            track[t] = m
    return track


def by_person(poses, coordinates):
    """(M, T, 33, C) ``coordinates`` (poses.image or poses.world) and confidence (M, T, 33), a person
    each (:func:`frame_tracks`), zero where a person was not found or a landmark's confidence is 0
    (the mark of a missed joint); one empty person where nobody was found at all."""
    track = frame_tracks(poses)
    keypoint = np.zeros((max(track.max() + 1, 1),) + coordinates.shape, np.float32)
    score = np.zeros(keypoint.shape[:3], np.float32)
    for t in np.flatnonzero(track >= 0):
        keypoint[track[t], t] = np.where(poses.score[t, :, None] > 0, coordinates[t], 0)
        score[track[t], t] = poses.score[t]
    return keypoint, score


def output_paths(out_dir, name):
    return os.path.join(out_dir, f'{name}.json'), os.path.join(out_dir, f'{name}.npy')


def write_poses(out_dir, name, poses, source, coordinates):
    """``NAME.json`` (Kinetics-skeleton, pixels, with the video's record) and, for world
    coordinates, ``NAME.npy`` (M, T, 33, 3), a person each, after it: the file that marks a video done is written
    last, each through a temporary file, so a stopped run leaves nothing half-written."""
    record_path, world_path = output_paths(out_dir, name)
    write_text_atomic(record_path, json.dumps(kinetics_json(poses, source), separators=(',', ':')),
                      durable=False)
    if coordinates == 'world':
        clip = by_person(poses, poses.world)[0]
        write_atomic(world_path, lambda f: np.save(f, clip), durable=False)


def finished(out_dir, name, coordinates):
    """Whether a video's poses are already there (a rerun skips it)."""
    record_path, world_path = output_paths(out_dir, name)
    return os.path.isfile(world_path if coordinates == 'world' else record_path)
