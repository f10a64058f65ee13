"""A synthetic action dataset written as genuine NTU RGB+D ``.skeleton`` files.

    python -m feeder.synthetic --out-dir RAW [--classes 12 --subjects 10 --seed 0]
    python -m feeder.synthetic --untrimmed --out-dir RAW    (long recordings, PKU-MMD layout)

Bodies are built by forward kinematics on the NTU 25-joint skeleton with per-subject proportions;
each class has its own kinematics (arm raises, waves, kicks, squats, bows, jumps, claps, ...,
and two-person interactions). Cameras 1-3 see the scene from -45, 0 and +45 degrees like NTU's,
so the cross-view split is a real viewpoint change, and cross-subject is a change of body.
Speed, amplitude, tracking noise, dropped frames, late-appearing bodies and occasional
spurious low-motion bodies make the files look like what the Kinect produced. The files go
through the same preparation as the real data (``feeder.prepare --dataset synthetic``).
``--format`` writes the same performances as own pose data instead: pyskl pickles of 2D
detections or of 3D motion capture, OpenPose per-frame JSON, or Kinetics-skeleton files.
"""
import json
import os
import pickle

import numpy as np

from feeder.raw.readers import parse_ntu_name
from feeder.raw.sources.synthetic import SPLITS
from utils.io import write_atomic, write_text_atomic

# NTU joints (0-based): parent and rest offset from the parent in metres, body frame
# x = the subject's left, y = up, z = forward.
PARENTS = (-1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 6, 11, 10)
REST = np.array([
    (0, 0, 0), (0, .25, 0), (0, .08, 0), (0, .15, .01),                       # 0-3 spine, neck, head
    (.17, -.03, 0), (0, -.28, 0), (0, -.25, 0), (0, -.08, 0),                # 4-7 left arm
    (-.17, -.03, 0), (0, -.28, 0), (0, -.25, 0), (0, -.08, 0),               # 8-11 right arm
    (.09, -.05, 0), (0, -.42, 0), (0, -.40, 0), (0, -.06, .12),              # 12-15 left leg
    (-.09, -.05, 0), (0, -.42, 0), (0, -.40, 0), (0, -.06, .12),             # 16-19 right leg
    (0, .22, 0), (0, -.07, 0), (.02, -.06, .03), (0, -.07, 0), (-.02, -.06, .03)])  # 20-24
HIP_HEIGHT = 0.92
# Segments that scale together in a subject's proportions.
ARMS, LEGS, TORSO = (5, 6, 7, 9, 10, 11, 21, 22, 23, 24), (13, 14, 15, 17, 18, 19), (1, 2, 3, 20)
CAMERA_YAW = {1: 0.0, 2: np.deg2rad(45.0), 3: np.deg2rad(-45.0)}

SWAP_LR = (0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22)
L_SHOULDER, L_ELBOW, R_SHOULDER, R_ELBOW = 4, 5, 8, 9
L_HIP, L_KNEE, R_HIP, R_KNEE, SPINE, NECK = 12, 13, 16, 17, 1, 2


def _rot(axis, angle):
    """Rotation matrices (T, 3, 3) about a fixed axis by angles (T,)."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.asarray(angle, dtype=np.float64)[:, None, None]
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def forward_kinematics(offsets, local, root_pos, root_yaw):
    """Joint positions (T, 25, 3) from bone offsets, local rotations (T, 25, 3, 3) and the root."""
    frames = len(root_pos)
    world = np.empty((frames, 25, 3, 3))
    pos = np.empty((frames, 25, 3))
    world[:, 0] = _rot((0, 1, 0), root_yaw) @ local[:, 0]
    pos[:, 0] = root_pos
    for j in (1, 20, 2, 3, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24, 12, 13, 14, 15, 16, 17, 18, 19):
        p = PARENTS[j]
        pos[:, j] = pos[:, p] + world[:, p] @ offsets[j]
        world[:, j] = world[:, p] @ local[:, j]
    return pos


def _bump(p, start=0.0, end=1.0):
    """Smooth 0 -> 1 -> 0 over [start, end] of the phase, zero outside."""
    u = np.clip((p - start) / (end - start), 0, 1)
    return np.sin(np.pi * u) ** 2


class Pose:
    """Local joint rotations being composed for one body over T frames."""

    def __init__(self, frames):
        self.local = np.tile(np.eye(3), (frames, 25, 1, 1))
        self.lift = np.zeros(frames)     # root height change
        self.advance = np.zeros(frames)  # root movement along the body's forward axis

    def turn(self, joint, axis, angle):
        angle = np.broadcast_to(angle, (len(self.local),))
        self.local[:, joint] = self.local[:, joint] @ _rot(axis, angle)


# Each action poses one body given the phase p in [0, 1], an amplitude a and its role (0 or 1,
# for interactions). Angles follow the right-hand rule about body axes (x left, y up, z forward):
# a negative turn about x swings a hanging limb forward.
def raise_left_arm(pose, p, a, role):
    pose.turn(L_SHOULDER, (0, 0, 1), 2.6 * a * _bump(p))


def wave_right_hand(pose, p, a, role):
    up = _bump(p, 0, 1) ** 0.3
    pose.turn(R_SHOULDER, (0, 0, 1), -2.4 * up)
    pose.turn(R_ELBOW, (0, 0, 1), -up * (0.3 + 0.5 * a * np.sin(2 * np.pi * 3 * p)))


def kick(pose, p, a, role):
    pose.turn(R_HIP, (1, 0, 0), -1.4 * a * _bump(p, 0.2, 0.8))
    pose.turn(R_KNEE, (1, 0, 0), 1.0 * _bump(p, 0.1, 0.55))


def squat(pose, p, a, role):
    depth = a * _bump(p)
    for hip, knee in ((L_HIP, L_KNEE), (R_HIP, R_KNEE)):
        pose.turn(hip, (1, 0, 0), -1.3 * depth)
        pose.turn(knee, (1, 0, 0), 2.2 * depth)
    pose.turn(SPINE, (1, 0, 0), 0.4 * depth)
    pose.lift -= 0.38 * depth


def bow(pose, p, a, role):
    pose.turn(SPINE, (1, 0, 0), 1.1 * a * _bump(p))
    pose.turn(NECK, (1, 0, 0), 0.3 * a * _bump(p))


def jump(pose, p, a, role):
    crouch = _bump(p, 0.0, 0.35) + _bump(p, 0.65, 1.0)
    for hip, knee in ((L_HIP, L_KNEE), (R_HIP, R_KNEE)):
        pose.turn(hip, (1, 0, 0), -0.6 * crouch)
        pose.turn(knee, (1, 0, 0), 1.1 * crouch)
    pose.lift += 0.35 * a * _bump(p, 0.3, 0.7) - 0.15 * crouch
    pose.turn(L_SHOULDER, (0, 0, 1), 1.5 * _bump(p, 0.25, 0.75))
    pose.turn(R_SHOULDER, (0, 0, 1), -1.5 * _bump(p, 0.25, 0.75))


def clap(pose, p, a, role):
    forward = _bump(p, 0, 1) ** 0.3
    swing = 0.5 + 0.4 * a * np.cos(2 * np.pi * 4 * p)
    pose.turn(L_SHOULDER, (1, 0, 0), -1.3 * forward)
    pose.turn(R_SHOULDER, (1, 0, 0), -1.3 * forward)
    pose.turn(L_SHOULDER, (0, 0, 1), forward * swing * 0.9)
    pose.turn(R_SHOULDER, (0, 0, 1), -forward * swing * 0.9)


def punch(pose, p, a, role):
    jab = _bump(p, 0.1, 0.45) + _bump(p, 0.55, 0.9)
    pose.turn(R_SHOULDER, (1, 0, 0), -1.5 * a * jab - 0.4)
    pose.turn(R_ELBOW, (1, 0, 0), -1.6 * (1 - jab))
    pose.turn(L_ELBOW, (1, 0, 0), -1.6)


def cheer(pose, p, a, role):
    up = a * _bump(p)
    pose.turn(L_SHOULDER, (0, 0, 1), 2.8 * up)
    pose.turn(R_SHOULDER, (0, 0, 1), -2.8 * up)
    pose.turn(L_ELBOW, (0, 0, 1), 0.3 * up * np.sin(2 * np.pi * 3 * p))
    pose.turn(R_ELBOW, (0, 0, 1), -0.3 * up * np.sin(2 * np.pi * 3 * p))


def march(pose, p, a, role):
    step = np.sin(2 * np.pi * 2 * p) * a
    pose.turn(L_HIP, (1, 0, 0), -0.9 * np.maximum(step, 0))
    pose.turn(L_KNEE, (1, 0, 0), 1.4 * np.maximum(step, 0))
    pose.turn(R_HIP, (1, 0, 0), -0.9 * np.maximum(-step, 0))
    pose.turn(R_KNEE, (1, 0, 0), 1.4 * np.maximum(-step, 0))
    pose.turn(L_SHOULDER, (1, 0, 0), 0.5 * step)
    pose.turn(R_SHOULDER, (1, 0, 0), -0.5 * step)


def handshake(pose, p, a, role):
    reach = _bump(p, 0.05, 0.95) ** 0.4
    pose.turn(R_SHOULDER, (1, 0, 0), -1.0 * reach)
    pose.turn(R_ELBOW, (1, 0, 0), -0.5 * reach + 0.12 * a * reach * np.sin(2 * np.pi * 4 * p))
    pose.advance += 0.18 * reach


def push(pose, p, a, role):
    if role == 0:
        shove = _bump(p, 0.2, 0.8) ** 0.5
        pose.turn(L_SHOULDER, (1, 0, 0), -1.4 * shove)
        pose.turn(R_SHOULDER, (1, 0, 0), -1.4 * shove)
        pose.advance += 0.25 * a * shove
    else:
        back = np.clip((p - 0.4) / 0.3, 0, 1)
        pose.advance -= 0.45 * a * back
        pose.turn(SPINE, (1, 0, 0), -0.35 * _bump(p, 0.4, 0.8))


ACTIONS = (
    ('raise left arm', raise_left_arm, 1), ('wave right hand', wave_right_hand, 1),
    ('kick', kick, 1), ('squat', squat, 1), ('bow', bow, 1), ('jump', jump, 1),
    ('clap', clap, 1), ('punch', punch, 1), ('cheer', cheer, 1), ('march', march, 1),
    ('handshake', handshake, 2), ('push', push, 2),
)


def subject_body(rng):
    """Bone offsets of one subject: overall size plus arm, leg and torso proportions."""
    offsets = REST * rng.uniform(0.85, 1.15)
    for group, spread in ((ARMS, 0.1), (LEGS, 0.08), (TORSO, 0.08)):
        offsets[list(group)] *= rng.uniform(1 - spread, 1 + spread)
    offsets[[4, 8, 12, 16], 0] *= rng.uniform(0.85, 1.2)  # shoulder and hip width
    return offsets


def action_phase(frames, rng):
    """Phase in [0, 1] per frame: idle lead-in and tail, and a smooth random tempo change."""
    u = np.linspace(0, 1, frames)
    lead, tail = rng.uniform(0, 0.2), rng.uniform(0, 0.2)
    warp = u + rng.uniform(-0.12, 0.12) * np.sin(np.pi * u)  # speeds up or slows down mid-way
    return np.clip((warp - lead) / (1 - lead - tail), 0, 1)


def idle_motion(pose, frames, rng, span=None):
    """Small unrelated movements (sway, fidgeting arms, head turns) that every action carries, at
    0.3 to 2 cycles over the clip, or over every ``span`` frames of a long recording."""
    u = np.linspace(0, 1, frames) if span is None else np.arange(frames) / span
    for joint, axis, size in ((SPINE, (0, 0, 1), 0.06), (SPINE, (1, 0, 0), 0.06), (NECK, (0, 1, 0), 0.3),
                              (L_SHOULDER, (1, 0, 0), 0.2), (R_SHOULDER, (1, 0, 0), 0.2),
                              (L_ELBOW, (1, 0, 0), 0.2), (R_ELBOW, (1, 0, 0), 0.2)):
        freq, phase = rng.uniform(0.3, 2.0), rng.uniform(0, 2 * np.pi)
        pose.turn(joint, axis, 2 * size * rng.uniform(0.3, 1) * np.sin(2 * np.pi * freq * u + phase))


def mirror(joints, root, yaw):
    """Reflect a body through its own sagittal plane, swapping left and right joint labels."""
    left = np.array([np.cos(yaw), 0, -np.sin(yaw)])  # the body's x axis in world coordinates
    rel = joints - root
    rel = rel - 2 * (rel @ left)[..., None] * left
    return (rel + root)[:, SWAP_LR]


def perform(action, body_offsets, frames, rng, camera, distance):
    """Camera-space joint positions (bodies, T, 25, 3) of one performance."""
    _, pose_fn, num_bodies = ACTIONS[action]
    # Subjects face camera 1, roughly; NTU's cameras sit at -45, 0 and +45 degrees.
    facing = np.pi + rng.normal(0, 0.35)
    # Some performances use the other hand or foot, as real subjects do.
    mirrored = num_bodies == 1 and rng.random() < 0.25
    out = []
    for role in range(num_bodies):
        pose = Pose(frames)
        pose_fn(pose, action_phase(frames, rng), rng.uniform(0.6, 1.15), role)
        idle_motion(pose, frames, rng)
        yaw = facing + (np.pi / 2 if role == 0 else -np.pi / 2) * (num_bodies - 1)
        forward = np.array([np.sin(yaw), 0, np.cos(yaw)])
        side = 0.0 if num_bodies == 1 else (-0.45 if role == 0 else 0.45)
        root = np.zeros((frames, 3))
        root[:, 0] = side + rng.normal(0, 0.05)
        root[:, 1] = HIP_HEIGHT * body_offsets[role][13, 1] / REST[13, 1] + pose.lift
        root += pose.advance[:, None] * forward
        joints = forward_kinematics(body_offsets[role], pose.local, root, np.full(frames, yaw))
        if mirrored:
            joints = mirror(joints, root[:, None], yaw)
        out.append(joints)
    return to_camera(np.stack(out), camera, distance)


def to_camera(world, camera, distance):
    """World positions seen by ``camera``: it looks along +z from ``distance`` away, rotated about
    the vertical axis, at about 1 m height (Kinect coordinates: y up, z away from the camera)."""
    cam = _rot((0, 1, 0), [CAMERA_YAW[camera]])[0]
    world = world @ cam.T
    world[..., 1] -= 1.0
    world[..., 2] += distance
    return world


JOINT_LINE = ' '.join(['%.7g'] * 11) + ' %d'


def format_file(bodies, rng, present):
    """NTU ``.skeleton`` text for bodies (B, T, 25, 3); ``present[b, t]`` says who is tracked."""
    frames = bodies.shape[1]
    body_ids = rng.integers(72057594037927936, 72057594037999999, size=len(bodies))
    lines = [str(frames)]
    for t in range(frames):
        visible = [b for b in range(len(bodies)) if present[b, t]]
        lines.append(str(len(visible)))
        for b in visible:
            lean = rng.normal(0, 0.05, size=2)
            lines.append(f'{body_ids[b]} 0 1 1 1 1 0 {lean[0]:.7g} {lean[1]:.7g} 2')
            lines.append('25')
            joints = bodies[b, t]
            z = np.maximum(joints[:, 2], 0.5)
            depth = np.stack([256 + 365 * joints[:, 0] / z, 212 - 365 * joints[:, 1] / z], 1)
            color = np.stack([960 + 1060 * joints[:, 0] / z, 540 - 1060 * joints[:, 1] / z], 1)
            quat = rng.normal(0, 0.3, size=(25, 4)) + (1, 0, 0, 0)
            quat /= np.linalg.norm(quat, axis=1, keepdims=True)
            state = np.where(rng.random(25) < 0.03, 1, 2)
            values = np.concatenate([joints, depth, color, quat, state[:, None]], axis=1)
            lines.extend(JOINT_LINE % tuple(row) for row in values.tolist())
    return '\n'.join(lines) + '\n'


def generate_sample(action, subject_offsets, camera, rng, distance):
    frames = int(rng.integers(40, 100))
    bodies = perform(action, subject_offsets, frames, rng, camera, distance)
    bodies = bodies + rng.normal(0, 0.015, size=bodies.shape)
    spikes = rng.random(bodies.shape[:3]) < 0.004
    bodies[spikes] += rng.normal(0, 0.08, size=(spikes.sum(), 3))
    present = np.ones(bodies.shape[:2], dtype=bool)
    if rng.random() < 0.15:  # the sensor loses everyone for a few frames
        start = rng.integers(1, frames - 5)
        present[:, start:start + rng.integers(1, 5)] = False
    if rng.random() < 0.1:  # the (last) body is only picked up after a while
        present[-1, :rng.integers(1, 12)] = False
    if rng.random() < 0.08:  # a spurious, almost static detection (a chair, a coat)
        ghost = np.repeat(bodies[:1, :1] + (rng.uniform(-1.5, 1.5), 0, rng.uniform(0.5, 1.5)), frames, 1)
        ghost += rng.normal(0, 0.004, size=ghost.shape)
        bodies = np.concatenate([ghost, bodies])  # listed first: selection must drop it
        present = np.concatenate([rng.random((1, frames)) < 0.7, present])
    return bodies, present


def samples(classes=len(ACTIONS), subjects=10, cameras=3, replications=2, setups=2, seed=0):
    """Every performance: (NTU-style name, camera-space bodies (B, T, 25, 3), who is tracked
    (B, T), the sample's generator)."""
    if not 1 <= classes <= len(ACTIONS):
        raise ValueError(f'--classes must be between 1 and {len(ACTIONS)}, got {classes}')
    if not 1 <= cameras <= 3:
        raise ValueError(f'--cameras must be between 1 and 3, got {cameras}')
    rng = np.random.default_rng(seed)
    for subject in range(1, subjects + 1):
        # A subject's body is fixed: two bodies for interactions, the subject and a partner.
        offsets = [subject_body(rng), subject_body(rng)]
        setup = 1 + (subject - 1) % setups
        distance = 2.6 + 0.4 * setup + rng.normal(0, 0.1)
        for replication in range(1, replications + 1):
            for action in range(classes):
                for camera in range(1, cameras + 1):
                    sample_rng = np.random.default_rng([seed, subject, replication, action, camera])
                    bodies, present = generate_sample(action, offsets, camera, sample_rng, distance)
                    name = f'S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action + 1:03d}'
                    yield name, bodies, present, sample_rng


def generate(out_dir, classes=len(ACTIONS), subjects=10, cameras=3, replications=2, setups=2, seed=0):
    """Write the dataset as NTU ``.skeleton`` files; returns the list of file names."""
    names = []
    for name, bodies, present, sample_rng in samples(classes, subjects, cameras, replications, setups, seed):
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, name + '.skeleton')
        _write_text(path, format_file(bodies, sample_rng, present))
        names.append(name)
    return names


# COCO-17 from the NTU joints: eyes and ears between the head and the shoulders
COCO_FROM_NTU = [({3: 1.0}), {3: .85, 4: .15}, {3: .85, 8: .15}, {3: .7, 4: .3}, {3: .7, 8: .3}, {4: 1.0},
                 {8: 1.0}, {5: 1.0}, {9: 1.0}, {6: 1.0}, {10: 1.0}, {12: 1.0}, {16: 1.0}, {13: 1.0}, {17: 1.0},
                 {14: 1.0}, {18: 1.0}]
# A motion-capture rig of 17 NTU joints under their own names (written as its layout JSON)
RIG = {'name': 'synthetic_rig',
       'joints': ['pelvis', 'spine', 'chest', 'neck', 'head', 'l_shoulder', 'l_elbow', 'l_wrist', 'r_shoulder',
                  'r_elbow', 'r_wrist', 'l_hip', 'l_knee', 'l_ankle', 'r_hip', 'r_knee', 'r_ankle'],
       'parents': {'spine': 'pelvis', 'chest': 'spine', 'neck': 'chest', 'head': 'neck', 'l_shoulder': 'chest',
                   'l_elbow': 'l_shoulder', 'l_wrist': 'l_elbow', 'r_shoulder': 'chest', 'r_elbow': 'r_shoulder',
                   'r_wrist': 'r_elbow', 'l_hip': 'pelvis', 'l_knee': 'l_hip', 'l_ankle': 'l_knee',
                   'r_hip': 'pelvis', 'r_knee': 'r_hip', 'r_ankle': 'r_knee'},
       'center': 'spine', 'up': ['pelvis', 'chest'], 'across': ['l_shoulder', 'r_shoulder']}
RIG_FROM_NTU = (0, 1, 20, 2, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18)


def detect_2d(bodies, present, rng):
    """What a 2D pose estimator would report for camera-space bodies: COCO-17 pixel coordinates
    (1920 x 1080 image) with jitter, a confidence, missed joints (0, 0, confidence 0) and nothing
    where the body is not tracked. Returns keypoint (B, T, 17, 2) and score (B, T, 17)."""
    joints = np.stack([sum(w * bodies[..., j, :] for j, w in mix.items()) for mix in COCO_FROM_NTU], axis=-2)
    z = np.maximum(joints[..., 2], 0.5)
    pixels = np.stack([960 + 1060 * joints[..., 0] / z, 540 - 1060 * joints[..., 1] / z], axis=-1)
    pixels += rng.normal(0, 2.0, size=pixels.shape)
    score = rng.uniform(0.55, 1.0, size=pixels.shape[:-1])
    missed = (rng.random(score.shape) < 0.04) | ~present[..., None]
    pixels[missed], score[missed] = 0, 0
    return pixels.astype(np.float32), score.astype(np.float32)


def pose_annotations(mode, classes=len(ACTIONS), subjects=10, cameras=3, replications=2, setups=2, seed=0):
    """The performances as pyskl annotations (``mode`` 2d: COCO-17 detections in pixels; 3d: the
    :data:`RIG` layout in millimetres) and their split like NTU-60 (xsub, xview)."""
    annotations, split = [], {}
    for name, bodies, present, rng in samples(classes, subjects, cameras, replications, setups, seed):
        record = {'frame_dir': name, 'label': parse_ntu_name(name)['action'] - 1, 'total_frames': bodies.shape[1]}
        if mode == '2d':
            record['keypoint'], record['keypoint_score'] = detect_2d(bodies, present, rng)
            record['img_shape'] = (1080, 1920)
        else:
            record['keypoint'] = (bodies[:, :, list(RIG_FROM_NTU)] * 1000 * present[..., None, None]).astype(np.float32)
        annotations.append(record)
        for benchmark, rule in SPLITS.items():
            part = 'train' if rule(parse_ntu_name(name)) else 'val'
            split.setdefault(f'{benchmark}_{part}', []).append(name)
    return annotations, split


def write_pyskl(path, mode, **sizes):
    """The performances as a pyskl annotation pickle (:func:`pose_annotations`; in 3d the
    layout's JSON written beside as ``<stem>_layout.json``). Returns the number of clips."""
    annotations, split = pose_annotations(mode, **sizes)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, lambda f: pickle.dump({'split': split, 'annotations': annotations}, f, protocol=4),
                 durable=False)
    if mode == '3d':
        _write_text(os.path.splitext(path)[0] + '_layout.json', json.dumps(RIG, indent=1))
    return len(annotations)


def _write_text(path, text):
    """Generated files are made again by rerunning: renamed into place whole, not waited for on disk."""
    write_text_atomic(path, text, durable=False)


def _write_json(path, record):
    _write_text(path, json.dumps(record))


def _people(record, rng):
    """Per frame, the detected people as (x, y, confidence) arrays (V, 3), in the source's order
    where someone is first seen in that frame, else shuffled (the estimators do not track)."""
    keypoint, score = record['keypoint'], record['keypoint_score']
    seen = (score > 0).any(-1)                        # (M, T)
    first = np.where(seen.any(1), seen.argmax(1), -1)
    for t in range(keypoint.shape[1]):
        people = [np.concatenate([keypoint[m, t], score[m, t, :, None]], 1) for m in range(len(keypoint)) if seen[m, t]]
        if t not in first:
            rng.shuffle(people)
        yield people


def write_openpose(out_dir, seed=0, **sizes):
    """The 2D performances as OpenPose output: ``OUT/<clip>/<clip>_<frame:012d>_keypoints.json``
    per frame, untracked people (``person_id`` -1), no file where nobody was detected (a gap in
    the frame numbers; the first and last frames are always written), 0 0 0 for a missed joint;
    ``labels.csv`` (both benchmarks) and ``classes.txt`` beside. Returns the number of clips."""
    annotations, split = pose_annotations('2d', seed=seed, **sizes)
    rng = np.random.default_rng([seed, 1])
    for record in annotations:
        folder = os.path.join(out_dir, record['frame_dir'])
        os.makedirs(folder, exist_ok=True)
        last = record['keypoint'].shape[1] - 1
        for t, people in enumerate(_people(record, rng)):
            if people or t in (0, last):
                _write_json(os.path.join(folder, f'{record["frame_dir"]}_{t:012d}_keypoints.json'), {
                    'version': 1.3, 'people': [{'person_id': [-1], 'pose_keypoints_2d': p.ravel().tolist(),
                                                'face_keypoints_2d': [], 'hand_left_keypoints_2d': [],
                                                'hand_right_keypoints_2d': []} for p in people]})
    _write_labels(out_dir, annotations, split)
    return len(annotations)


def write_kinetics(out_dir, seed=0, **sizes):
    """The 2D performances as Kinetics-skeleton files (the st-gcn format), x divided by the
    image's 1920 and y by its 1080: ``OUT/xsub_train/<clip>.json`` and ``OUT/xsub_val/``, each
    with its label file ``OUT/xsub_<part>_label.json``; a frame where nobody was detected has an
    empty ``skeleton`` or no entry at all. Returns the number of clips."""
    annotations, split = pose_annotations('2d', seed=seed, **sizes)
    rng = np.random.default_rng([seed, 1])
    size = np.array([1920.0, 1080.0, 1.0])
    training, labels = set(split['xsub_train']), {}
    for part in ('train', 'val'):
        os.makedirs(os.path.join(out_dir, f'xsub_{part}'), exist_ok=True)
    for record in annotations:
        part = 'train' if record['frame_dir'] in training else 'val'
        name, label = record['frame_dir'], int(record['label'])
        data, last = [], record['keypoint'].shape[1] - 1
        for t, people in enumerate(_people(record, rng)):
            if people or t in (0, last) or rng.random() < 0.5:
                data.append({'frame_index': t + 1, 'skeleton': [
                    {'pose': (p / size)[:, :2].ravel().tolist(), 'score': p[:, 2].tolist()} for p in people]})
        _write_json(os.path.join(out_dir, f'xsub_{part}', name + '.json'),
                    {'data': data, 'label': ACTIONS[label][0], 'label_index': label})
        labels.setdefault(part, {})[name] = {'has_skeleton': True, 'label': ACTIONS[label][0], 'label_index': label}
    for part, record in labels.items():
        _write_json(os.path.join(out_dir, f'xsub_{part}_label.json'), record)
    return len(annotations)


def _write_labels(out_dir, annotations, split):
    part_of = {(name, s) for s, names in split.items() for name in names}
    lines = ['name,label,split'] + [f'{r["frame_dir"]},{r["label"]},{s}' for r in annotations
                                    for s in sorted(split) if (r['frame_dir'], s) in part_of]
    _write_text(os.path.join(out_dir, 'labels.csv'), '\n'.join(lines) + '\n')
    _write_text(os.path.join(out_dir, 'classes.txt'),
                '\n'.join(action[0] for action in ACTIONS[:max(r['label'] for r in annotations) + 1]) + '\n')
