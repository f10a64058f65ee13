"""The live mode (``timeline.py --follow``, docs/protocols.md, "Timelines"): OpenPose frames read as
an estimator writes them, into a folder (``<name>_<frame>_keypoints.json``) or as JSON lines on
standard input, or poses estimated here from a video file as it grows or a camera
(:mod:`recordings.video`), their people tracked frame by frame (:class:`feeder.raw.tracking.Tracker`), and a
line printed per window as soon as its last frame has arrived, with the latency from that frame's
arrival to the line. A frame that is not JSON (a truncated file or line) is skipped and counted: a
folder's file once a later frame is there (until then it may still be being written), a line at
once; it counts as a frame without people."""
import json
import os
import sys
import time
from collections import deque
from typing import NamedTuple

import numpy as np

from feeder.raw.pose_json import OPENPOSE_FILE, openpose_people
from feeder.raw.tracking import Tracker
from recordings.read import Recording
from recordings.video import is_video_source, video_frames
from recordings.windows import Window

POLL_SECONDS = 0.02


class Followed(NamedTuple):
    """What a live run saw: the windows scored, the frames read, how many could not be read, and
    each window's latency (ms from its last frame's arrival to its line)."""
    windows: list
    frames: int
    unreadable: int
    latencies: list


def _parse(text, source, num_joints, image_size):
    """A frame's detections, or ``None`` where it is not JSON (cut short); JSON that is not an
    OpenPose frame of the layout's joints stops the run with one line naming it."""
    try:
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return openpose_people(record, source, num_joints, image_size)


def folder_frames(folder, num_joints, image_size, counts, idle_exit=None):
    """(arrival time, detections or None for an unreadable frame) of each frame written into
    ``folder``, in frame order; a frame number skipped by the files is a frame without people."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'--follow {folder}: no such folder')
    last, waited_since = None, time.perf_counter()
    while True:
        numbers = {}
        for file in os.listdir(folder):
            match = OPENPOSE_FILE.fullmatch(file)
            if match and (last is None or int(match.group(1)) > last):
                numbers[int(match.group(1))] = os.path.join(folder, file)
        for number in sorted(numbers):
            arrived = time.perf_counter()
            with open(numbers[number], 'rb') as f:
                detections = _parse(f.read(), numbers[number], num_joints, image_size)
            if detections is None and number == max(numbers):
                break  # perhaps still being written: read again at the next look
            if detections is None:
                counts['unreadable'] += 1
            for _ in range(number - last - 1 if last is not None else 0):
                yield arrived, []
            last, waited_since = number, time.perf_counter()
            yield arrived, detections or []
        if idle_exit is not None and time.perf_counter() - waited_since > idle_exit:
            return
        time.sleep(POLL_SECONDS)


def line_frames(stream, num_joints, image_size, counts):
    """(arrival time, detections) of each JSON line of ``stream``: an OpenPose frame, ``{"people": [...]}``."""
    for number, line in enumerate(stream):
        if not line.strip():
            continue
        arrived = time.perf_counter()
        detections = _parse(line, f'standard input, line {number + 1}', num_joints, image_size)
        if detections is None:
            counts['unreadable'] += 1
        yield arrived, detections or []


class LiveWindows:
    """Frames in one at a time; the windows that end at each frame scored at once, per track."""

    def __init__(self, scorer, window, stride, min_presence, num_joints, channels=2):
        self.scorer, self.window, self.stride, self.min_presence = scorer, window, stride, min_presence
        self.tracker, self.recent, self.frames, self.num_joints = Tracker(), deque(maxlen=window), 0, num_joints
        self.channels = channels

    def add(self, detections):
        """Frame ``self.frames``'s detections in, each (xy, confidence), tracked by its xy, or (xy,
        confidence, coordinates) where the clip's coordinates are others (world coordinates, tracked
        in the image); the :class:`Window` list of the window ending here."""
        tracks = self.tracker.step(self.frames, [detection[:2] for detection in detections])
        self.recent.append({track: (detection[2 if len(detection) > 2 else 0], detection[1])
                            for track, detection in zip(tracks, detections) if track >= 0})
        self.frames += 1
        if self.frames < self.window or (self.frames - self.window) % self.stride:
            return []
        start = self.frames - self.window
        persons = sorted({track for frame in self.recent for track in frame})
        if not persons:
            return []
        keypoint = np.zeros((len(persons), self.window, self.num_joints, self.channels), dtype=np.float32)
        score = np.zeros(keypoint.shape[:3], dtype=np.float32)
        for t, frame in enumerate(self.recent):
            for m, track in enumerate(persons):
                if track in frame:
                    xy, confidence = frame[track]
                    keypoint[m, t] = np.where(confidence[:, None] > 0, xy, 0)
                    score[m, t] = confidence
        recording = Recording(keypoint, score, 'live')
        found = self.scorer.windows(recording, self.window, self.window, self.min_presence)
        return [Window(persons[w.person], start, start + self.window, w.probs) for w in found]


def follow(args, scorer, layout):
    """Run the live mode until the stream ends (or Ctrl-C); returns what it saw (:class:`Followed`)."""
    info = scorer.info
    counts, channels = {'unreadable': 0}, 2
    if is_video_source(args.follow):
        channels = info.coordinates  # world metres for a 3D classifier, else pixels
        frames = video_frames(args.follow, layout, channels, args.idle_exit)
    elif info.channels == 'xyz':
        raise ValueError(f'--follow {args.follow}: OpenPose frames are 2D, but the classifier was trained on 3D clips '
                         f'of {info.name}')
    elif args.follow == '-':
        frames = line_frames(sys.stdin, layout.num_joints, args.image_size, counts)
    else:
        frames = folder_frames(args.follow, layout.num_joints, args.image_size, counts, args.idle_exit)
    live = LiveWindows(scorer, args.window, args.stride, args.min_presence, layout.num_joints, channels)
    scored, latencies = [], []
    try:
        for arrived, detections in frames:
            for window in live.add(detections):
                top = window.probs.argsort()[::-1][:3]
                latencies.append((time.perf_counter() - arrived) * 1000)
                print(f'person {window.person} frames {window.start}-{window.end}: '
                      + ', '.join(f'{info.class_name(c)} {window.probs[c]:.2f}' for c in top)
                      + f' ({latencies[-1]:.0f} ms)', flush=True)
                scored.append(window)
    except KeyboardInterrupt:
        pass
    print(f'{live.frames} frames read ({counts["unreadable"]} unreadable, skipped), {len(scored)} windows scored'
          + (f', median latency {np.median(latencies):.0f} ms' if latencies else ''))
    return Followed(scored, live.frames, counts['unreadable'], latencies)
