"""Skeleton layouts: the one place that knows joint names, bones, graphs and alignment joints.

A layout is described by its joints and each joint's parent, in code or as a JSON file (the
schema of docs/data.md, "Skeleton layouts"):

    {"name": "my_rig", "joints": ["pelvis", "spine", ...], "parents": {"spine": "pelvis", ...},
     "center": "spine", "up": ["pelvis", "spine"], "across": ["l_shoulder", "r_shoulder"],
     "graph_center": "spine"}

The bones (each joint minus its parent, the root paired with itself) and the ST-GCN graph follow
from the parents; ``center``, ``up`` and ``across`` name one joint or a list of joints meaning
their mean. A new skeleton is one entry in ``LAYOUTS`` or one JSON file.
"""
import re
from dataclasses import dataclass

from utils.io import read_json


@dataclass(frozen=True)
class Layout:
    name: str
    joint_names: tuple
    parents: tuple        # parent index per joint; the root is its own parent
    center: tuple         # joints whose mean is the per-frame centre (docs/data.md, step 5.2)
    up: tuple             # (bottom joints, top joints): turned onto +z in 3D (step 5.3)
    across: tuple         # (from joints, to joints): then turned onto +x (step 5.4)
    graph_center: int     # ST-GCN "spatial" partition centre

    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def root(self):
        return next(v for v, p in enumerate(self.parents) if v == p)

    @property
    def bone_pairs(self):
        """0-based (joint, parent) pairs: bone[v] = joint[v] - joint[parent]; every joint owns one
        bone (the published bone modality relies on this), the root's is zero."""
        return tuple(enumerate(self.parents))

    @property
    def mirror(self):
        """Each joint's left/right counterpart by name ("left" and "right", or "l" and "r", swapped as
        whole words of the name, in any case), the joint itself where it has none: the permutation that swaps a
        body's sides (AimCLR's flip, docs/method.md)."""
        index = {name.lower(): v for v, name in enumerate(self.joint_names)}
        swap = {'left': 'right', 'right': 'left', 'l': 'r', 'r': 'l'}

        def other(name):
            def turn(match):
                return swap[match.group(0).lower()]
            return re.sub(r'(?<![A-Za-z])([Ll]eft|[Rr]ight|LEFT|RIGHT|[LlRr])(?![a-z])', turn, name).lower()
        return tuple(index.get(other(name), v) for v, name in enumerate(self.joint_names))

    @property
    def edges(self):
        """Graph edges for ST-GCN: the bone pairs without the root's self-pair."""
        return tuple((a, b) for a, b in self.bone_pairs if a != b)

    def to_json(self):
        """The layout in the JSON schema (joint names instead of indices)."""
        names = self.joint_names

        def named(joints):
            return names[joints[0]] if len(joints) == 1 else [names[j] for j in joints]
        return {'name': self.name, 'joints': list(names),
                'parents': {names[v]: names[p] for v, p in enumerate(self.parents) if v != p},
                'center': named(self.center), 'up': [named(j) for j in self.up],
                'across': [named(j) for j in self.across], 'graph_center': names[self.graph_center]}

    @classmethod
    def from_json(cls, record, source='layout'):
        """A layout from the JSON schema; every error names ``source`` and the key at fault."""
        def fail(key, message):
            raise ValueError(f'{source}: "{key}": {message}')

        if not isinstance(record, dict):
            raise ValueError(f'{source}: expected a JSON object with "name", "joints", "parents", "center", "up", '
                             f'"across"')
        for key in ('name', 'joints', 'parents', 'center', 'up', 'across'):
            if key not in record:
                fail(key, 'missing')
        names = record['joints']
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            fail('joints', 'expected a list of joint names')
        if len(set(names)) != len(names):
            fail('joints', f'names repeat: {sorted({n for n in names if names.count(n) > 1})}')
        index = {n: i for i, n in enumerate(names)}
        parents_by_name = record['parents']
        if not isinstance(parents_by_name, dict):
            fail('parents', 'expected an object {joint: its parent}')
        for child, parent in parents_by_name.items():
            for name in (child, parent):
                if name not in index:
                    fail('parents', f'unknown joint {name!r}')
        roots = [n for n in names if n not in parents_by_name]
        if len(roots) != 1:
            fail('parents', f'exactly one joint (the root) must lack a parent; {len(roots)} do: {roots}')
        parents = tuple(index[parents_by_name.get(n, n)] for n in names)
        for v in range(len(names)):
            seen, joint = set(), v
            while parents[joint] != joint:
                if joint in seen:
                    fail('parents', f'a cycle through {names[joint]!r}')
                seen.add(joint)
                joint = parents[joint]

        def joints(key, value):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
                fail(key, 'expected a joint name or a list of joint names')
            for name in value:
                if name not in index:
                    fail(key, f'unknown joint {name!r}')
            return tuple(index[n] for n in value)

        def pair(key):
            value = record[key]
            if not isinstance(value, list) or len(value) != 2:
                fail(key, 'expected a pair [from, to] of joints or lists of joints')
            return joints(key, value[0]), joints(key, value[1])

        root = next(v for v, p in enumerate(parents) if v == p)
        graph_center = joints('graph_center', record.get('graph_center', names[root]))
        if len(graph_center) != 1:
            fail('graph_center', 'expected one joint')
        name = record['name']
        if not isinstance(name, str) or not name:
            fail('name', 'expected a non-empty string')
        return cls(name, tuple(names), parents, joints('center', record['center']), pair('up'), pair('across'),
                   graph_center[0])


def read_layout(path):
    """A layout from a JSON file, with errors that name the file and the key."""
    return Layout.from_json(read_json(path, '--layout'), source=f'--layout {path}')


def _layout(name, joints, parents, center, up, across, graph_center=None):
    record = {'name': name, 'joints': joints.split(), 'parents': dict(p.split(':') for p in parents.split()),
              'center': center, 'up': up, 'across': across}
    if graph_center:
        record['graph_center'] = graph_center
    return Layout.from_json(record, source=f'built-in layout {name}')


# NTU RGB+D and PKU-MMD (Kinect v2). The parents are the published bone list (docs/method.md,
# "Modalities"), rooted at the spine at the shoulders.
NTU25 = _layout(
    'ntu25',
    'spine_base spine_mid neck head shoulder_left elbow_left wrist_left hand_left shoulder_right elbow_right '
    'wrist_right hand_right hip_left knee_left ankle_left foot_left hip_right knee_right ankle_right foot_right '
    'spine_shoulder handtip_left thumb_left handtip_right thumb_right',
    'spine_base:spine_mid spine_mid:spine_shoulder neck:spine_shoulder head:neck shoulder_left:spine_shoulder '
    'elbow_left:shoulder_left wrist_left:elbow_left hand_left:wrist_left shoulder_right:spine_shoulder '
    'elbow_right:shoulder_right wrist_right:elbow_right hand_right:wrist_right hip_left:spine_base '
    'knee_left:hip_left ankle_left:knee_left foot_left:ankle_left hip_right:spine_base knee_right:hip_right '
    'ankle_right:knee_right foot_right:ankle_right handtip_left:thumb_left thumb_left:hand_left '
    'handtip_right:thumb_right thumb_right:hand_right',
    'spine_mid', ['spine_base', 'spine_mid'], ['shoulder_left', 'shoulder_right'])

# Northwestern-UCLA (Kinect v1), rooted like NTU's at the shoulder centre.
KINECT_V1_20 = _layout(
    'kinect_v1_20',
    'hip_center spine shoulder_center head shoulder_left elbow_left wrist_left hand_left shoulder_right '
    'elbow_right wrist_right hand_right hip_left knee_left ankle_left foot_left hip_right knee_right ankle_right '
    'foot_right',
    'hip_center:spine spine:shoulder_center head:shoulder_center shoulder_left:shoulder_center '
    'elbow_left:shoulder_left wrist_left:elbow_left hand_left:wrist_left shoulder_right:shoulder_center '
    'elbow_right:shoulder_right wrist_right:elbow_right hand_right:wrist_right hip_left:hip_center '
    'knee_left:hip_left ankle_left:knee_left foot_left:ankle_left hip_right:hip_center knee_right:hip_right '
    'ankle_right:knee_right foot_right:ankle_right',
    'spine', ['hip_center', 'spine'], ['shoulder_left', 'shoulder_right'])

# COCO-17 (HRNet, RTMPose, ViTPose, mmpose, YOLO-pose): no pelvis or neck; rooted at the nose as
# the pose-estimation graphs are, centred on the hips.
COCO17 = _layout(
    'coco17',
    'nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow right_elbow left_wrist '
    'right_wrist left_hip right_hip left_knee right_knee left_ankle right_ankle',
    'left_eye:nose right_eye:nose left_ear:left_eye right_ear:right_eye left_shoulder:nose right_shoulder:nose '
    'left_elbow:left_shoulder right_elbow:right_shoulder left_wrist:left_elbow right_wrist:right_elbow '
    'left_hip:left_shoulder right_hip:right_shoulder left_knee:left_hip right_knee:right_hip '
    'left_ankle:left_knee right_ankle:right_knee',
    ['left_hip', 'right_hip'], [['left_hip', 'right_hip'], ['left_shoulder', 'right_shoulder']],
    ['left_shoulder', 'right_shoulder'])

# OpenPose BODY_25.
OPENPOSE25 = _layout(
    'openpose25',
    'nose neck right_shoulder right_elbow right_wrist left_shoulder left_elbow left_wrist mid_hip right_hip '
    'right_knee right_ankle left_hip left_knee left_ankle right_eye left_eye right_ear left_ear left_big_toe '
    'left_small_toe left_heel right_big_toe right_small_toe right_heel',
    'nose:neck right_shoulder:neck right_elbow:right_shoulder right_wrist:right_elbow left_shoulder:neck '
    'left_elbow:left_shoulder left_wrist:left_elbow mid_hip:neck right_hip:mid_hip right_knee:right_hip '
    'right_ankle:right_knee left_hip:mid_hip left_knee:left_hip left_ankle:left_knee right_eye:nose '
    'left_eye:nose right_ear:right_eye left_ear:left_eye left_big_toe:left_ankle left_small_toe:left_big_toe '
    'left_heel:left_ankle right_big_toe:right_ankle right_small_toe:right_big_toe right_heel:right_ankle',
    'mid_hip', ['mid_hip', 'neck'], ['left_shoulder', 'right_shoulder'])

# OpenPose COCO-18, the Kinetics-skeleton of ST-GCN.
OPENPOSE18 = _layout(
    'openpose18',
    'nose neck right_shoulder right_elbow right_wrist left_shoulder left_elbow left_wrist right_hip right_knee '
    'right_ankle left_hip left_knee left_ankle right_eye left_eye right_ear left_ear',
    'nose:neck right_shoulder:neck right_elbow:right_shoulder right_wrist:right_elbow left_shoulder:neck '
    'left_elbow:left_shoulder left_wrist:left_elbow right_hip:right_shoulder right_knee:right_hip '
    'right_ankle:right_knee left_hip:left_shoulder left_knee:left_hip left_ankle:left_knee right_eye:nose '
    'left_eye:nose right_ear:right_eye left_ear:left_eye',
    ['left_hip', 'right_hip'], [['left_hip', 'right_hip'], 'neck'], ['left_shoulder', 'right_shoulder'])

# MediaPipe Pose (BlazePose), 33 landmarks; rooted at the nose, centred on the hips.
MEDIAPIPE33 = _layout(
    'mediapipe33',
    'nose left_eye_inner left_eye left_eye_outer right_eye_inner right_eye right_eye_outer left_ear right_ear '
    'mouth_left mouth_right left_shoulder right_shoulder left_elbow right_elbow left_wrist right_wrist '
    'left_pinky right_pinky left_index right_index left_thumb right_thumb left_hip right_hip left_knee '
    'right_knee left_ankle right_ankle left_heel right_heel left_foot_index right_foot_index',
    'left_eye_inner:nose left_eye:left_eye_inner left_eye_outer:left_eye left_ear:left_eye_outer '
    'right_eye_inner:nose right_eye:right_eye_inner right_eye_outer:right_eye right_ear:right_eye_outer '
    'mouth_left:nose mouth_right:nose left_shoulder:nose right_shoulder:nose left_elbow:left_shoulder '
    'right_elbow:right_shoulder left_wrist:left_elbow right_wrist:right_elbow left_pinky:left_wrist '
    'right_pinky:right_wrist left_index:left_wrist right_index:right_wrist left_thumb:left_wrist '
    'right_thumb:right_wrist left_hip:left_shoulder right_hip:right_shoulder left_knee:left_hip '
    'right_knee:right_hip left_ankle:left_knee right_ankle:right_knee left_heel:left_ankle '
    'right_heel:right_ankle left_foot_index:left_heel right_foot_index:right_heel',
    ['left_hip', 'right_hip'], [['left_hip', 'right_hip'], ['left_shoulder', 'right_shoulder']],
    ['left_shoulder', 'right_shoulder'])

# Human3.6M, the 17 joints 3D lifting work uses.
H36M17 = _layout(
    'h36m17',
    'pelvis right_hip right_knee right_foot left_hip left_knee left_foot spine thorax neck head left_shoulder '
    'left_elbow left_wrist right_shoulder right_elbow right_wrist',
    'right_hip:pelvis right_knee:right_hip right_foot:right_knee left_hip:pelvis left_knee:left_hip '
    'left_foot:left_knee spine:pelvis thorax:spine neck:thorax head:neck left_shoulder:thorax '
    'left_elbow:left_shoulder left_wrist:left_elbow right_shoulder:thorax right_elbow:right_shoulder '
    'right_wrist:right_elbow',
    'pelvis', ['pelvis', 'thorax'], ['left_shoulder', 'right_shoulder'])

LAYOUTS = {layout.name: layout for layout in (NTU25, KINECT_V1_20, COCO17, OPENPOSE25, OPENPOSE18, MEDIAPIPE33,
                                              H36M17)}


def get_layout(name):
    """A built-in layout by name, or one read from a JSON file."""
    if name in LAYOUTS:
        return LAYOUTS[name]
    if name.endswith('.json'):
        return read_layout(name)
    raise ValueError(f'unknown skeleton layout {name!r}; known: {sorted(LAYOUTS)}, or a JSON file')
