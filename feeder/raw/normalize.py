"""Body selection and the standard per-sample normalisation (docs/data.md, NTU steps 3-5).

Everything works on one sample at a time in (person, frame, joint, xyz) order, vectorised over
frames and joints, so a worker process can stream samples straight into the output arrays.
"""
import math

import numpy as np


def motion_energy(bodies):
    """std(x) + std(y) + std(z) over each slot's non-empty frames; ``bodies`` is (M, T, V, c)."""
    energy = np.zeros(len(bodies))
    for m, body in enumerate(bodies):
        valid = body[body.any(axis=(1, 2))]
        if len(valid):
            energy[m] = valid.reshape(-1, body.shape[-1]).std(axis=0).sum()
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
    return rotation_matrix(np.cross(v, target), np.arccos(np.clip(cos, -1.0, 1.0)))


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
    for person in sample:
        pad_cyclic(person)
    if not sample.any():
        return sample
    present = sample.any(axis=-1, keepdims=True)
    sample -= joint_mean(sample[0], layout.center)[None, :, None, :]
    sample *= present
    for (bottom, top), target in ((layout.up, (0, 0, 1)), (layout.across, (1, 0, 0))):
        rot = align_rotation(joint_mean(sample[0, 0], top) - joint_mean(sample[0, 0], bottom), target)
        sample[...] = sample.astype(np.float64) @ rot.T
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


def normalize_pose_data(points, present, layout):
    """Normalisation of one estimator's or capture system's clip (M, T, V, c), c 2 or 3, with
    ``present`` (M, T, V) marking detected joints; returns float32 with missing joints at 0.

    2D (image coordinates): y flipped to point up, then per frame centred on ``layout.center``,
    then one scale per clip. 3D: centred likewise, turned so that person 0's first complete
    ``up`` vector points along +z and its ``across`` vector along +x (the NTU steps), then
    scaled. The scale divides by the mean length of the layout's bones over the clip, so pixels
    of any image size, metres and millimetres land in one range.
    """
    points = np.where(present[..., None], points, 0).astype(np.float64)
    if points.shape[-1] == 2:
        points[..., 1] *= -1
    centre = np.zeros((points.shape[1], points.shape[-1]))
    found = np.zeros(points.shape[1], dtype=bool)
    for person, mask in zip(points, present):  # person 0's centre, else the next person's
        weight = mask[:, list(layout.center)]
        count = weight.sum(1)
        new = (count > 0) & ~found
        centre[new] = (person[:, list(layout.center)] * weight[..., None]).sum(1)[new] / count[new, None]
        found |= new
    if found.any():
        centre[~found] = centre[found].mean(0)
    points = (points - centre[None, :, None]) * present[..., None]
    if points.shape[-1] == 3:
        needed = list({*layout.up[0], *layout.up[1], *layout.across[0], *layout.across[1]})
        complete = np.flatnonzero(present[0][:, needed].all(1))
        if len(complete):
            t = complete[0]
            for (bottom, top), target in ((layout.up, (0, 0, 1)), (layout.across, (1, 0, 0))):
                rot = align_rotation(joint_mean(points[0, t], top) - joint_mean(points[0, t], bottom), target)
                points = points @ rot.T
    child, parent = np.array(layout.edges).T
    both = present[:, :, child] & present[:, :, parent]
    if both.any():
        lengths = np.linalg.norm(points[:, :, child] - points[:, :, parent], axis=-1)[both]
        if lengths.mean() > 0:
            points /= lengths.mean()
    return points.astype(np.float32)
