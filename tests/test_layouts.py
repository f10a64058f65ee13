import pytest

from feeder.info import BUILTIN_DATASETS
from feeder.layouts import KINECT_V1_20, LAYOUTS, NTU25, get_layout
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
    assert NTU25.graph_center == 20 and NTU25.center_joint == 1
    assert NTU25.z_axis == (0, 1) and NTU25.x_axis == (4, 8)


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
