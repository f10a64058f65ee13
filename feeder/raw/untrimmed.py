"""Synthetic untrimmed recordings in the PKU-MMD layout (``python -m feeder.synthetic --untrimmed``):
each session is one long recording of several performances of known classes with idle motion
between, seen by up to three cameras, one person or two (docs/protocols.md, "Temporal detection").

    RAW/skeleton/<session>-<camera>.txt   150 numbers a frame: 2 bodies x 25 joints x xyz (0 where absent)
    RAW/label/<session>-<camera>.txt      class,start,end,confidence per performance (class from 1)
    RAW/split/cross_subject.txt, cross_view.txt

The sessions are split as the synthetic set is: by subject (the session's) and by camera. The
class numbers are the synthetic set's (``feeder.raw.synthetic.ACTIONS``); ``feeder.prepare
--dataset pku1`` prepares the labelled performances as clips.
"""
import os

import numpy as np

from feeder.raw.sources.synthetic import SPLITS
from feeder.raw.synthetic import (ACTIONS, HIP_HEIGHT, REST, Pose, action_phase, forward_kinematics, idle_motion,
                                  subject_body, to_camera)
from utils.io import write_text_atomic

CAMERA_NAMES = {1: 'M', 2: 'L', 3: 'R'}
IDLE_FRAMES = (25, 70)       # between performances, and before the first and after the last
PERFORMANCE_FRAMES = (45, 100)
IDLE_SPAN = 80               # idle movements cycle 0.3 to 2 times every IDLE_SPAN frames
PAIR_GAP = 1.2               # metres between two persons' roots


def _turn_ramp(frames):
    """0 -> 1 -> 0 over a performance, flat in the middle: partners turn to each other and back."""
    u = np.linspace(0, 1, frames)
    return np.sin(np.pi / 2 * np.clip(np.minimum(u, 1 - u) / 0.15, 0, 1)) ** 2


def session(classes, pair, rng):
    """One session in world coordinates: bodies (persons, T, 25, 3) and its performances
    [(class, start, end)] (end exclusive). A two-person session holds the interactions among
    ``classes`` too; in the others' performances one of the two acts while the other idles."""
    solo = [a for a in range(classes) if ACTIONS[a][2] == 1]
    duo = [a for a in range(classes) if ACTIONS[a][2] == 2] if pair else []
    performances, t = [], int(rng.integers(*IDLE_FRAMES))
    for _ in range(int(rng.integers(4, 8))):
        action = int(rng.choice(duo)) if duo and (not solo or rng.random() < 0.4) else int(rng.choice(solo))
        length = int(rng.integers(*PERFORMANCE_FRAMES))
        performances.append((action, t, t + length))
        t += length + int(rng.integers(*IDLE_FRAMES))
    persons = 2 if pair else 1
    offsets = [subject_body(rng) for _ in range(persons)]
    poses = [Pose(t) for _ in range(persons)]
    facing = np.pi + rng.normal(0, 0.2)
    yaw = np.full((persons, t), facing)
    for action, start, end in performances:
        _, pose_fn, needs = ACTIONS[action]
        roles = [(0, 0), (1, 1)] if needs == 2 else [(int(rng.integers(persons)), 0)]
        for person, role in roles:
            part = Pose(end - start)
            pose_fn(part, action_phase(end - start, rng), rng.uniform(0.6, 1.15), role)
            pose = poses[person]
            pose.local[start:end] = part.local
            pose.lift[start:end] += part.lift
            pose.advance[start:end] += part.advance
            pose.advance[end:] += part.advance[-1]  # a push leaves its partner where it ended
            if needs == 2:  # the partners turn to face each other
                yaw[person, start:end] += (-1 if person == 0 else 1) * np.pi / 2 * _turn_ramp(end - start)
    bodies = []
    for person, pose in enumerate(poses):
        idle_motion(pose, t, rng, span=IDLE_SPAN)
        root = np.zeros((t, 3))
        root[:, 0] = 0.0 if persons == 1 else (person - 0.5) * PAIR_GAP
        root[:, 1] = HIP_HEIGHT * offsets[person][13, 1] / REST[13, 1] + pose.lift
        root += pose.advance[:, None] * np.stack([np.sin(yaw[person]), np.zeros(t), np.cos(yaw[person])], 1)
        bodies.append(forward_kinematics(offsets[person], pose.local, root, yaw[person]))
    return np.stack(bodies), performances


def format_video(bodies):
    """PKU-MMD skeleton text: a line a frame of 2 x 25 x xyz numbers, zeros for an absent body."""
    frames = np.zeros((bodies.shape[1], 2, 25, 3))
    frames[:, :len(bodies)] = bodies.transpose(1, 0, 2, 3)
    return '\n'.join(' '.join(f'{v:.5f}' for v in row) for row in frames.reshape(len(frames), -1).tolist()) + '\n'


def _split_file(train, val):
    return f'Training videos:\n{", ".join(train)}\nValidation videos:\n{", ".join(val)}\n'


def generate_untrimmed(out_dir, classes=len(ACTIONS), subjects=10, cameras=3, seed=0):
    """Write the sessions' recordings, labels and split files; returns the recordings' names."""
    if not 1 <= classes <= len(ACTIONS):
        raise ValueError(f'--classes must be between 1 and {len(ACTIONS)}, got {classes}')
    if not 1 <= cameras <= 3:
        raise ValueError(f'--cameras must be between 1 and 3, got {cameras}')
    for folder in ('skeleton', 'label', 'split'):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    names, parts = [], {benchmark: ([], []) for benchmark in SPLITS}
    for subject in range(1, subjects + 1):
        rng = np.random.default_rng([seed, subject, 17])
        world, performances = session(classes, pair=subject % 3 == 2, rng=rng)
        distance = 2.8 + rng.normal(0, 0.1)
        labels = ''.join(f'{action + 1},{start},{end},1\n' for action, start, end in performances)
        for camera in range(1, cameras + 1):
            name = f'{subject:04d}-{CAMERA_NAMES[camera]}'
            camera_rng = np.random.default_rng([seed, subject, camera, 17])
            bodies = to_camera(world, camera, distance)
            bodies = bodies + camera_rng.normal(0, 0.015, size=bodies.shape)
            write_text_atomic(os.path.join(out_dir, 'skeleton', name + '.txt'), format_video(bodies), durable=False)
            write_text_atomic(os.path.join(out_dir, 'label', name + '.txt'), labels, durable=False)
            names.append(name)
            for benchmark, rule in SPLITS.items():
                parts[benchmark][0 if rule({'subject': subject, 'camera': camera}) else 1].append(name)
    for benchmark, file in (('xsub', 'cross_subject.txt'), ('xview', 'cross_view.txt')):
        write_text_atomic(os.path.join(out_dir, 'split', file), _split_file(*parts[benchmark]), durable=False)
    return names
