"""Named joints across layouts (feeder/joints.py): the vocabulary's rules, every pair of built-in
layouts, one pair against its table written out, and the refusals."""
import itertools

import numpy as np
import pytest

from feeder.joints import canonical, joint_map
from feeder.layouts import LAYOUTS, Layout


@pytest.mark.parametrize('name', ['left_shoulder', 'shoulder_left', 'l_shoulder', 'LeftShoulder', 'left-shoulder',
                                  'Shoulder_L', 'L Shoulder'])
def test_one_side_spelling(name):
    assert canonical(name) == 'left_shoulder'


def test_synonyms_and_the_layouts_own_meanings():
    assert {canonical(n) for n in ('pelvis', 'hip_center', 'spine_base', 'mid_hip', 'MidHip')} == {'pelvis'}
    assert canonical('spine_shoulder') == canonical('shoulder_center') == canonical('thorax') == 'neck'
    assert canonical('neck', 'openpose25') == 'neck' and canonical('neck', 'ntu25') == 'upper_neck'
    assert canonical('left_foot', 'h36m17') == 'left_ankle' and canonical('foot_left', 'ntu25') == 'left_toe'
    assert canonical('left_foot_index') == canonical('left_big_toe') == 'left_toe'


def _mirror(layout):
    return np.eye(layout.num_joints)[list(layout.mirror)]


@pytest.mark.parametrize('source, target', list(itertools.product(LAYOUTS, LAYOUTS)))
def test_every_pair_of_built_in_layouts_maps(source, target):
    m = joint_map(LAYOUTS[source], LAYOUTS[target])
    sums = m.matrix.sum(1)
    assert np.allclose(sums[sums > 0], 1) and (m.matrix >= 0).all()  # a joint, a mean, or nothing
    if source == target:
        np.testing.assert_array_equal(m.matrix, np.eye(LAYOUTS[source].num_joints))
        assert m.identity
    # a body's left and right sides stay its left and right sides
    np.testing.assert_allclose(_mirror(LAYOUTS[target]) @ m.matrix, m.matrix @ _mirror(LAYOUTS[source]))
    # there and back keeps every joint the target took by name
    back = joint_map(LAYOUTS[target], LAYOUTS[source]).matrix @ m.matrix
    by_name = [s for s in range(m.matrix.shape[1]) if (m.matrix[:, s] == 1).any()]
    np.testing.assert_array_equal(back[by_name][:, by_name], np.eye(len(by_name)))


def test_coco_onto_ntu_as_written_out():
    coco, ntu = LAYOUTS['coco17'], LAYOUTS['ntu25']
    m = joint_map(coco, ntu)
    joints = m.describe()['joints']
    assert joints['spine_base'] == 'mean of left_hip, right_hip'
    assert joints['spine_shoulder'] == 'mean of left_shoulder, right_shoulder'
    assert joints['spine_mid'] == 'mean of left_shoulder, right_shoulder, left_hip, right_hip'
    assert joints['head'] == 'mean of left_ear, right_ear' and joints['knee_right'] == 'right_knee'
    assert [j for j, v in joints.items() if v is None] == ['neck', 'hand_left', 'hand_right', 'foot_left', 'foot_right',
                                                           'handtip_left', 'thumb_left', 'handtip_right', 'thumb_right']
    assert m.describe()['dropped'] == ['nose', 'left_eye', 'right_eye']
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 17, 2)).astype(np.float32)  # N, C, T, V, M
    y = m.apply(x, axis=3)
    c, n = coco.joint_names.index, ntu.joint_names.index
    assert y.shape == (2, 3, 5, 25, 2) and y.dtype == np.float32
    hips = (x[:, :, :, c('left_hip')] + x[:, :, :, c('right_hip')]) / 2
    np.testing.assert_allclose(y[:, :, :, n('spine_base')], hips, rtol=1e-6)
    np.testing.assert_array_equal(y[:, :, :, n('elbow_left')], x[:, :, :, c('left_elbow')])
    assert not y[:, :, :, n('neck')].any()
    assert m.summary() == 'coco17 -> ntu25: 12 of 25 joints by name, 4 made as means, 9 left at zero, 3 of 17 dropped'


def _rig(joints, parents, center, up, across):
    return Layout.from_json({'name': 'rig', 'joints': joints, 'parents': parents, 'center': center, 'up': up,
                             'across': across})


def test_an_unmappable_layout_gets_one_line():
    rig = _rig(['a', 'b', 'c'], {'b': 'a', 'c': 'a'}, 'a', ['a', 'b'], ['b', 'c'])
    with pytest.raises(ValueError, match=r"^layout rig cannot be mapped onto ntu25: ntu25's alignment joints "
                                         r'spine_base, spine_mid, shoulder_left, shoulder_right are neither in rig'):
        joint_map(rig, LAYOUTS['ntu25'])
    arms = _rig(['left_hip', 'right_hip', 'left_shoulder', 'right_shoulder'],
                {'right_hip': 'left_hip', 'left_shoulder': 'left_hip', 'right_shoulder': 'left_hip'},
                ['left_hip', 'right_hip'], [['left_hip', 'right_hip'], ['left_shoulder', 'right_shoulder']],
                ['left_shoulder', 'right_shoulder'])
    with pytest.raises(ValueError, match='they share 4 joints by name, fewer than 8'):
        joint_map(arms, LAYOUTS['coco17'])
    twice = _rig(['left_hip', 'hip_left', 'x'], {'hip_left': 'left_hip', 'x': 'left_hip'}, 'x', ['x', 'left_hip'],
                 ['x', 'hip_left'])
    with pytest.raises(ValueError, match='layout rig: joints left_hip name one place twice'):
        joint_map(twice, LAYOUTS['coco17'])
