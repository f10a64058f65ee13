import json

import pytest

from feeder.info import BUILTIN_DATASETS
from feeder.layouts import COCO17, KINECT_V1_20, LAYOUTS, NTU25, Layout, get_layout
from feeder.raw.synthetic import ACTIONS

NTU_BONES_1_BASED = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
                     (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
                     (18, 17), (19, 18), (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12)]


def _is_spanning_tree(layout):
    parent = list(range(layout.num_joints))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a
    for a, b in layout.edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            return False
        parent[ra] = rb
    return len(layout.edges) == layout.num_joints - 1


def test_ntu25_matches_published_bone_list():
    assert NTU25.bone_pairs == tuple((a - 1, b - 1) for a, b in NTU_BONES_1_BASED)
    assert NTU25.graph_center == 20 and NTU25.center == (1,)
    assert NTU25.up == ((0,), (1,)) and NTU25.across == ((4,), (8,))


def test_kinect_v1_20_layout():
    assert KINECT_V1_20.num_joints == 20
    assert KINECT_V1_20.bone_pairs[:4] == ((0, 1), (1, 2), (2, 2), (3, 2))
    assert KINECT_V1_20.graph_center == 2
    assert KINECT_V1_20.joint_names[4] == 'shoulder_left' and KINECT_V1_20.joint_names[8] == 'shoulder_right'


@pytest.mark.parametrize('layout', LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_joint_owns_one_bone_and_the_graph_is_a_tree(layout):
    assert sorted(a for a, _ in layout.bone_pairs) == list(range(layout.num_joints))
    assert sum(a == b for a, b in layout.bone_pairs) == 1
    assert _is_spanning_tree(layout)
    assert len(layout.joint_names) == layout.num_joints


def test_builtin_datasets_use_registered_layouts():
    for info in BUILTIN_DATASETS.values():
        assert get_layout(info.layout.name) is info.layout
    assert BUILTIN_DATASETS['synthetic'].num_classes == len(ACTIONS)
    with pytest.raises(ValueError, match='unknown skeleton layout'):
        get_layout('no_such_layout')


@pytest.mark.parametrize('layout', LAYOUTS.values(), ids=LAYOUTS.keys())
def test_builtin_layouts_round_trip_through_json(layout, tmp_path):
    path = tmp_path / f'{layout.name}.json'
    path.write_text(json.dumps(layout.to_json(), indent=1))
    again = get_layout(str(path))
    assert again == layout and again.joint_names == layout.joint_names


def test_layout_json_describes_coco_without_a_pelvis():
    assert COCO17.joint_names[COCO17.root] == 'nose'
    assert [COCO17.joint_names[j] for j in COCO17.center] == ['left_hip', 'right_hip']
    assert COCO17.to_json()['up'] == [['left_hip', 'right_hip'], ['left_shoulder', 'right_shoulder']]
    assert dict(COCO17.edges)[COCO17.joint_names.index('left_ankle')] == COCO17.joint_names.index('left_knee')


RIG = {'name': 'rig', 'joints': ['pelvis', 'spine', 'neck', 'l_hand', 'r_hand'],
       'parents': {'spine': 'pelvis', 'neck': 'spine', 'l_hand': 'neck', 'r_hand': 'neck'},
       'center': 'spine', 'up': ['pelvis', 'neck'], 'across': ['l_hand', 'r_hand']}


@pytest.mark.parametrize('change, message', [
    ({'parents': {**RIG['parents'], 'r_hand': 'tail'}}, '"parents": unknown joint \'tail\''),
    ({'parents': {k: v for k, v in RIG['parents'].items() if k != 'l_hand'}},
     '"parents": exactly one joint .* 2 do: \\[\'pelvis\', \'l_hand\'\\]'),
    ({'parents': {**RIG['parents'], 'pelvis': 'neck'}}, '"parents": exactly one joint .* 0 do'),
    ({'joints': RIG['joints'] + ['tail'], 'parents': {**RIG['parents'], 'tail': 'tail2', 'tail2': 'tail'}},
     '"parents": unknown joint \'tail2\''),
    ({'center': ['spine', 'hip']}, '"center": unknown joint \'hip\''),
    ({'up': ['pelvis']}, '"up": expected a pair'),
    ({'across': [['l_hand'], 3]}, '"across": expected a joint name or a list'),
    ({'graph_center': ['spine', 'neck']}, '"graph_center": expected one joint'),
    ({'joints': ['a', 'a']}, '"joints": names repeat'),
])
def test_layout_json_errors_name_the_key(change, message, tmp_path):
    path = tmp_path / 'rig.json'
    path.write_text(json.dumps({**RIG, **change}))
    with pytest.raises(ValueError, match=f'--layout {path}: {message}'):
        get_layout(str(path))


def test_a_cycle_in_the_parents_is_named(tmp_path):
    rig = {**RIG, 'joints': RIG['joints'] + ['a', 'b'], 'parents': {**RIG['parents'], 'a': 'b', 'b': 'a'}}
    path = tmp_path / 'rig.json'
    path.write_text(json.dumps(rig))
    with pytest.raises(ValueError, match='"parents": a cycle through'):
        get_layout(str(path))
    path.write_text('{"name": ')
    with pytest.raises(ValueError, match='not JSON'):
        get_layout(str(path))
    layout = Layout.from_json(RIG)
    assert layout.bone_pairs == ((0, 0), (1, 0), (2, 1), (3, 2), (4, 2)) and layout.graph_center == 0
