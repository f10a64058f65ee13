"""Skeleton layouts: the one place that knows joint counts, bones, graphs and alignment joints.

A new skeleton format is one entry in ``LAYOUTS``; feeders, modalities and encoders read
everything they need from it.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layout:
    name: str
    num_joints: int
    # 0-based (v1, v2) pairs: bone[v1] = joint[v1] - joint[v2]; the root pairs with itself so that
    # every joint owns exactly one bone (the published bone modality relies on this).
    bone_pairs: tuple
    graph_center: int          # ST-GCN "spatial" partition centre
    center_joint: int          # per-frame centring joint (docs/data.md, step 5.2)
    z_axis: tuple              # (bottom, top): rotated onto +z (docs/data.md, step 5.3)
    x_axis: tuple              # (from, to): then rotated onto +x (docs/data.md, step 5.4)
    joint_names: tuple = field(default=(), compare=False)

    @property
    def edges(self):
        """Graph edges for ST-GCN: the bone pairs without the root's self-pair."""
        return tuple((a, b) for a, b in self.bone_pairs if a != b)


def _zero_based(pairs):
    return tuple((a - 1, b - 1) for a, b in pairs)


# NTU RGB+D (Kinect v2): bone list as published (1-based in docs/method.md).
NTU25 = Layout(
    name='ntu25',
    num_joints=25,
    bone_pairs=_zero_based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12)]),
    graph_center=20,
    center_joint=1,
    z_axis=(0, 1),
    x_axis=(4, 8),
    joint_names=(
        'spine_base', 'spine_mid', 'neck', 'head', 'shoulder_left', 'elbow_left', 'wrist_left',
        'hand_left', 'shoulder_right', 'elbow_right', 'wrist_right', 'hand_right', 'hip_left',
        'knee_left', 'ankle_left', 'foot_left', 'hip_right', 'knee_right', 'ankle_right',
        'foot_right', 'spine_shoulder', 'handtip_left', 'thumb_left', 'handtip_right',
        'thumb_right'),
)

# Northwestern-UCLA (Kinect v1), rooted like NTU's list at the shoulder centre.
KINECT_V1_20 = Layout(
    name='kinect_v1_20',
    num_joints=20,
    bone_pairs=((0, 1), (1, 2), (2, 2), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8),
                (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16),
                (18, 17), (19, 18)),
    graph_center=2,
    center_joint=1,
    z_axis=(0, 1),
    x_axis=(4, 8),
    joint_names=(
        'hip_center', 'spine', 'shoulder_center', 'head', 'shoulder_left', 'elbow_left',
        'wrist_left', 'hand_left', 'shoulder_right', 'elbow_right', 'wrist_right', 'hand_right',
        'hip_left', 'knee_left', 'ankle_left', 'foot_left', 'hip_right', 'knee_right',
        'ankle_right', 'foot_right'),
)

LAYOUTS = {layout.name: layout for layout in (NTU25, KINECT_V1_20)}


def get_layout(name):
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f'unknown skeleton layout {name!r}; known: {sorted(LAYOUTS)}') from None
