"""Linking untracked detections into person tracks (docs/data.md, "Pose estimator output").

OpenPose and Kinetics-skeleton files list a frame's people in no particular order. Tracks are
built frame by frame: each track predicts where its body is now (its last pose moved on by its
last velocity, a translation), every (track, detection) pair is scored by the mean distance of
the joints both hold, and pairs are matched greedily from the closest while that distance stays
under ``max_distance`` times the track's body size (the diagonal of its joints' box). A track
not matched for more than ``max_gap`` frames ends; a detection left over starts a new track.
Tracks come out in the order they began (within a frame, in the order listed).
"""
import numpy as np

MAX_GAP = 10
MAX_DISTANCE = 0.5


class _Track:
    def __init__(self, t, xy, score):
        self.detections = [(t, xy, score)]
        self.last, self.seen, self.last_t = xy.copy(), score > 0, t
        self.velocity = np.zeros(xy.shape[-1])
        self.size = self._size()

    def _size(self):
        joints = self.last[self.seen]
        return float(np.linalg.norm(joints.max(0) - joints.min(0))) if len(joints) > 1 else 0.0

    def add(self, t, xy, score):
        seen = score > 0
        both = seen & self.seen
        if both.any():
            self.velocity = (xy[both] - self.last[both]).mean(0) / (t - self.last_t)
        # joints missed now keep their last place, so that later frames still match the whole body
        self.last[seen] = xy[seen]
        self.seen |= seen
        self.last_t = t
        self.size = self._size()
        self.detections.append((t, xy, score))


def _costs(tracks, detections, t):
    """(tracks, detections): the mean distance, over the joints both hold, between each track's
    predicted pose at frame ``t`` and each detection; infinite where they share no joint."""
    predicted = np.stack([track.last + track.velocity * (t - track.last_t) for track in tracks])  # K, V, C
    held = np.stack([track.seen for track in tracks])
    xy = np.stack([d[0] for d in detections])
    detected = np.stack([d[1] > 0 for d in detections])
    both = held[:, None] & detected[None]                                    # K, D, V
    distance = np.linalg.norm(xy[None] - predicted[:, None], axis=-1)
    count = both.sum(-1)
    return np.where(count > 0, np.where(both, distance, 0).sum(-1) / np.maximum(count, 1), np.inf)


class Tracker:
    """Links detections into tracks one frame at a time (the live mode follows a stream with it);
    ``begun``: every track in the order it began."""

    def __init__(self, max_gap=MAX_GAP, max_distance=MAX_DISTANCE):
        self.max_gap, self.max_distance = max_gap, max_distance
        self.begun, self._open = [], []

    def step(self, t, detections):
        """Frame ``t``'s detections (xy (V, C), confidence (V,)) added; returns each one's track,
        its index in ``begun`` (-1 for a detection that holds no joint)."""
        self._open = [track for track in self._open if t - track.last_t - 1 <= self.max_gap]
        tracks, assigned = self._open, [-1] * len(detections)
        if tracks and detections:
            cost = _costs(tracks, detections, t)
            limit = self.max_distance * np.maximum([track.size for track in tracks], 1e-6)
            matched_tracks = set()
            for flat in np.argsort(cost, axis=None, kind='stable'):  # closest first; ties by track, then detection
                i, j = divmod(int(flat), len(detections))
                if i in matched_tracks or assigned[j] >= 0 or not cost[i, j] <= limit[i]:
                    continue
                tracks[i].add(t, *detections[j])
                matched_tracks.add(i)
                assigned[j] = tracks[i].number
        for j, (xy, score) in enumerate(detections):
            if assigned[j] < 0 and (score > 0).any():
                track = _Track(t, xy, score)
                track.number = assigned[j] = len(self.begun)
                self._open.append(track)
                self.begun.append(track)
        return assigned


def link_tracks(frames, max_gap=MAX_GAP, max_distance=MAX_DISTANCE):
    """``frames``: for each frame, a list of detections (xy (V, C), confidence (V,), 0 where the
    joint was missed). Returns the tracks, each a list of (frame, xy, confidence)."""
    tracker = Tracker(max_gap, max_distance)
    for t, detections in enumerate(frames):
        tracker.step(t, detections)
    return [track.detections for track in tracker.begun]


def tracks_to_array(tracks, num_frames, num_joints, channels=2):
    """Tracks from :func:`link_tracks` as keypoints (M, T, V, channels) and confidence (M, T, V)
    float32, zero where a track holds nothing (one empty person where there is no track)."""
    keypoint = np.zeros((max(len(tracks), 1), num_frames, num_joints, channels), dtype=np.float32)
    score = np.zeros(keypoint.shape[:3], dtype=np.float32)
    for m, track in enumerate(tracks):
        for t, xy, confidence in track:
            keypoint[m, t] = np.where(confidence[:, None] > 0, xy, 0)
            score[m, t] = confidence
    return keypoint, score
