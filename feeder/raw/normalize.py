"""Body selection and normalisation: the standard per-sample steps of the built-in datasets
(docs/data.md, NTU steps 3-5) and those of own pose data (docs/data.md, "Your own data").

Everything works on one sample at a time in (person, frame, joint, coordinate) order, vectorised
over frames and joints, so a worker process can stream samples straight into the output arrays.
"""
import math

import numpy as np


def nonempty_frames(bodies):
    """(M, T): where each slot of ``bodies`` (M, T, V, c) holds a non-zero coordinate."""
    return (bodies.reshape(bodies.shape[:2] + (-1,)) != 0).any(-1)   # one row a frame: faster than any((2, 3))


def motion_energy(bodies):
    """std(x) + std(y) + std(z) over each slot's non-empty frames; ``bodies`` is (M, T, V, c)."""
    nonempty = nonempty_frames(bodies)
    energy = np.zeros(len(bodies))
    for m in np.flatnonzero(nonempty.any(1)).tolist():
        # each coordinate as one contiguous row: numpy's std down a 3-wide column is 3x slower
        energy[m] = np.ascontiguousarray(bodies[m][nonempty[m]].reshape(-1, bodies.shape[-1]).T).std(axis=1).sum()
    return energy


def select_bodies(bodies, keep=2):
    """The ``keep`` slots with the highest motion energy, highest first (ties keep slot order)."""
    order = np.argsort(-motion_energy(bodies), kind='stable')[:keep]
    out = np.zeros((keep,) + bodies.shape[1:], dtype=bodies.dtype)
    out[:len(order)] = bodies[order]
    return out


def rotation_matrix(axis, theta):
    """Euler-Rodrigues rotation by ``theta`` about ``axis``, as in the published preprocessing."""
    if np.abs(axis).sum() < 1e-6 or abs(theta) < 1e-6:
        return np.eye(3)
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / math.sqrt(np.dot(axis, axis))
    a = math.cos(theta / 2.0)
    b, c, d = -axis * math.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                     [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                     [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


def align_rotation(v, target):
    """The rotation taking vector ``v`` onto the direction of ``target`` (identity if degenerate)."""
    v = np.asarray(v, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if np.abs(v).sum() < 1e-6:
        return np.eye(3)
    cos = np.dot(v / np.linalg.norm(v), target / np.linalg.norm(target))
    # np.cross's products, written out: for two 3-vectors its overhead is most of a turn's cost
    axis = np.array([v[1] * target[2] - v[2] * target[1], v[2] * target[0] - v[0] * target[2],
                     v[0] * target[1] - v[1] * target[0]])
    return rotation_matrix(axis, np.arccos(np.clip(cos, -1.0, 1.0)))


def pad_cyclic(person):
    """Shift a late-starting person to frame 0 and repeat its frames cyclically to the end.

    ``person`` is (T, V, 3) and is modified in place. Zero frames inside the clip stay zero and
    are repeated with it, exactly as the published tool does.
    """
    nonempty = person.any(axis=(1, 2))
    if not nonempty.any():
        return person
    if not nonempty[0]:
        valid = person[nonempty].copy()
        person[:] = 0
        person[:len(valid)] = valid
        nonempty = person.any(axis=(1, 2))
    length = int(np.flatnonzero(nonempty)[-1]) + 1
    if length < len(person):
        person[length:] = person[np.arange(length, len(person)) % length]
    return person


def joint_mean(points, joints):
    """The mean of ``joints`` (indices along the joint axis, -2) of ``points`` (..., V, 3)."""
    return points[..., list(joints), :].mean(axis=-2)


def normalize_sample(sample, layout):
    """Standard normalisation of one sample (M, T, V, 3), float32, in place; returns it.

    Cyclic padding per person, centring on person 0's ``layout.center`` per frame (zero joints
    stay zero), then rotations taking person 0's frame-0 ``layout.up`` vector onto +z and
    ``layout.across`` vector onto +x.
    """
    nonempty = nonempty_frames(sample)
    if not nonempty.any():
        return sample
    spans = {(int(n.argmax()), len(n) - int(n[::-1].argmax())) for n in nonempty if n.any()}   # [first, end)
    if len(spans) == 1 and min(spans)[0] == 0:
        # every person spans frames [0, length): padding repeats them all with that period and the
        # steps after it go frame by frame, so the first period is turned and then repeated
        (_, length), = spans
        _centre_and_turn(sample[:, :length], layout)
        if length < sample.shape[1]:
            sample[:, length:] = sample[:, np.arange(length, sample.shape[1]) % length]
        return sample
    for person in sample:
        pad_cyclic(person)
    return _centre_and_turn(sample, layout)


def _centre_and_turn(sample, layout):
    """Centring on person 0 and the two turns (steps after the padding), in place."""
    persons, frames, joints, _ = sample.shape
    flat = sample.reshape(persons, frames, joints * 3)   # rows of whole frames: faster than (..., 3)
    present = np.repeat((sample[..., 0] != 0) | (sample[..., 1] != 0) | (sample[..., 2] != 0), 3, axis=-1)
    flat -= np.tile(joint_mean(sample[0], layout.center), joints)
    flat *= present
    # the two turns of the published tool, the second found on the clip as the first leaves it,
    # applied as one product (the tool applies them one after the other: the same up to rounding)
    first = sample[0, 0].astype(np.float64)
    turn = np.eye(3)
    for (bottom, top), target in ((layout.up, (0, 0, 1)), (layout.across, (1, 0, 0))):
        frame = first @ turn.T
        turn = align_rotation(joint_mean(frame, top) - joint_mean(frame, bottom), target) @ turn
    # as one 2D product, which BLAS takes, rather than matmul's stack of (V, 3) products
    sample[...] = np.dot(sample.reshape(-1, 3).astype(np.float64), turn.T).reshape(sample.shape)
    return sample


def fit_frames(clip, max_frames, resample=False):
    """Fit (M, T, V, 3) into ``max_frames``: longer clips are cut, or resampled linearly."""
    length = clip.shape[1]
    if length <= max_frames:
        return clip
    if not resample:
        return clip[:, :max_frames]
    # Linear resampling with the end points kept: frame i of the output sits at
    # i * (T - 1) / (max_frames - 1) of the input.
    pos = np.linspace(0, length - 1, max_frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, length - 1)
    w = (pos - lo)[None, :, None, None]
    return (clip[:, lo] * (1 - w) + clip[:, hi] * w).astype(clip.dtype)


def mark_missing(points, confidence=None):
    """Missing joints of ``points`` (M, T, V, c) zeroed: NaN or infinite coordinates, confidence 0
    (or NaN), or all coordinates exactly 0 (estimators' "not detected"). Returns the points
    (float64), a confidence (M, T, V) that is 0 where missing (1 where the data has none) and the
    present mask."""
    points = np.asarray(points, dtype=np.float64)
    present = np.isfinite(points).all(-1)
    present &= (np.where(present[..., None], points, 0) != 0).any(-1)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        present &= np.isfinite(confidence) & (confidence > 0)
        confidence = np.where(present, confidence, 0)
    else:
        confidence = present.astype(np.float64)
    return np.where(present[..., None], points, 0), confidence, present


def fill_missing(points, present):
    """Each missed joint filled along time from the frames where it was detected: linearly between
    two detections, the nearest detection held before the first and after the last. Only frames
    in which the person was seen at all are filled; a joint never detected stays zero. Returns the
    points and the mask of joints present after filling."""
    points, filled = points.copy(), present.copy()
    seen = present.any(-1)  # (M, T): the person is in the frame
    frames = np.arange(points.shape[1])
    gaps = seen[:, :, None] & ~present
    for m, v in zip(*np.nonzero(gaps.any(1) & present.any(1))):
        detected, gap = present[m, :, v], gaps[m, :, v]
        for c in range(points.shape[-1]):
            points[m, gap, v, c] = np.interp(frames[gap], frames[detected], points[m, detected, v, c])
        filled[m, gap, v] = True
    return points, filled


def person_centre(person, mask, center):
    """The centre of one person (T, V, c) per frame, and where it is known: the mean of the
    ``center`` joints where all of them are present; in other frames with joints present, the
    mean over those joints j of ``x_j + d_j``, where ``d_j`` is the clip's mean offset from joint j
    to the centre over the frames that hold both (joints never seen with the centre are not used;
    where none is left, the plain mean of the joints present)."""
    center = list(center)
    have = mask[:, center].all(1)
    centre = np.zeros((len(person), person.shape[-1]))
    centre[have] = person[have][:, center].mean(1)
    rest = ~have & mask.any(1)
    if not rest.any():
        return centre, have
    both = (have[:, None] & mask)[..., None]  # (T, V, 1)
    pairs = both.sum(0)
    offset = ((centre[:, None] - person) * both).sum(0) / np.maximum(pairs, 1)  # (V, c)
    known = mask[rest] & (pairs[:, 0] > 0)[None]
    plain = ~known.any(1)
    known[plain] = mask[rest][plain]
    estimate = ((person[rest] + offset * ~plain[:, None, None]) * known[..., None]).sum(1)
    centre[rest] = estimate / known.sum(1, keepdims=True)
    return centre, have | rest


def _mean_vector(person, mask, pair):
    """The mean over the frames holding all its joints of ``joint_mean(top) - joint_mean(bottom)``."""
    bottom, top = pair
    frames = mask[:, [*bottom, *top]].all(1)
    if not frames.any():
        return None
    return (joint_mean(person[frames], top) - joint_mean(person[frames], bottom)).mean(0)


def body_axes(points, present, layout):
    """A 3D clip's own up and across directions (docs/data.md, "Your own data"): ``layout.up``
    and ``layout.across`` averaged over the frames where their joints are present, of person 0
    (else of the next person who has them). ``(None, None)`` where no one does; across may be
    ``None`` alone."""
    for person, mask in zip(points, present):
        up = _mean_vector(person, mask, layout.up)
        if up is not None and np.linalg.norm(up) > 0:
            return up, _mean_vector(person, mask, layout.across)
    return None, None


def frame_rotation(up, across=None):
    """The proper rotation (rows: the new x, y, z axes) that takes ``up`` onto +z and ``across``,
    made orthogonal to it, onto +x, without tilting up. Where across is missing or along up, the
    source x axis (else y) made orthogonal to up takes its place. Identity without ``up``."""
    if up is None or not np.linalg.norm(up) > 0:
        return np.eye(3)
    z = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    candidates = [] if across is None else [np.asarray(across, dtype=np.float64)]
    for a in candidates + [np.eye(3)[0], np.eye(3)[1]]:
        x = a - np.dot(a, z) * z
        if np.linalg.norm(x) > 1e-6 * max(np.linalg.norm(a), 1e-12):
            break
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def unit(vectors):
    """Vectors (..., 3) scaled to length 1."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def normalize_pose_data(points, present, layout, rotation=None, detected=None):
    """Normalisation of one estimator's or capture system's clip (M, T, V, c), c 2 or 3, with
    ``present`` (M, T, V) marking the joints to use (detected or filled) and ``detected`` those
    detected (default: ``present``); returns float32 with the others at 0 (docs/data.md, "Your own
    data").

    2D (image coordinates): y flipped to point up. Then per frame centred on person 0's centre
    (:func:`person_centre` of its detected joints: a filled centre over a long gap would drift;
    where person 0 is absent, the next person's; in frames with no one, the clip's mean centre);
    3D: turned by ``rotation`` (3 x 3, rows the new axes) where given. Last, one scale per clip:
    the mean length of the layout's bones over the clip (both ends present), so pixels of any
    image size, metres and millimetres land in one range.
    """
    detected = present if detected is None else detected
    points = np.where(present[..., None], points, 0).astype(np.float64)
    if points.shape[-1] == 2:
        points[..., 1] *= -1
    centre = np.zeros((points.shape[1], points.shape[-1]))
    found = np.zeros(points.shape[1], dtype=bool)
    for person, mask in zip(points, detected):
        own, known = person_centre(person, mask, layout.center)
        new = known & ~found
        centre[new] = own[new]
        found |= new
    if found.any():
        centre[~found] = centre[found].mean(0)
    points = (points - centre[None, :, None]) * present[..., None]
    if rotation is not None and points.shape[-1] == 3:
        points = points @ np.asarray(rotation).T
    child, parent = np.array(layout.edges).T
    both = present[:, :, child] & present[:, :, parent]
    if both.any():
        lengths = np.linalg.norm(points[:, :, child] - points[:, :, parent], axis=-1)[both]
        if lengths.mean() > 0:
            points /= lengths.mean()
    return points.astype(np.float32)


# ``--align auto`` turns the whole dataset as one where 90% of its clips' up directions lie within
# this angle of their mean direction (a fixed camera or capture volume), else each clip on its own.
AUTO_ALIGN_DEGREES = 30.0


def up_spread(ups):
    """The angle (degrees) around the clips' mean up direction within which 90% of them lie."""
    ups = unit(ups)
    mean = unit(ups.mean(0))
    return float(np.percentile(np.degrees(np.arccos(np.clip(ups @ mean, -1, 1))), 90))


def dataset_rotation(ups, acrosses):
    """One rotation for a whole dataset: the mean of its clips' unit up directions onto +z and
    the mean of their unit across directions, made orthogonal to it, onto +x."""
    acrosses = [a for a in acrosses if a is not None and np.linalg.norm(a) > 0]
    return frame_rotation(unit(ups).mean(0), unit(acrosses).mean(0) if acrosses else None)
