import numpy as np
import pytest

from feeder.raw.normalize import normalize_sample, select_bodies
from feeder.layouts import NTU25
from feeder.raw.readers import DataFormatError, parse_ntu_name, read_ntu_skeleton
from tests.conftest import random_body, write_skeleton
from tests.reference import get_nonzero_std, pre_normalization, read_xyz


def test_parse_name():
    assert parse_ntu_name('S012C003P045R002A107') == dict(setup=12, camera=3, subject=45, replication=2, action=107)
    with pytest.raises(ValueError, match='not an NTU sample name'):
        parse_ntu_name('S12C3P45R2A107')


@pytest.mark.parametrize('crlf', [False, True])
def test_parse_lf_and_crlf_give_the_written_coordinates(tmp_path, rng, crlf):
    a, b = random_body(rng, 6), random_body(rng, 6, offset=(1, 0, 3))
    frames = [[a[0]], [a[1], b[1]], [], [b[3], a[3]], [a[4], b[4]], [a[5]]]
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, frames, crlf=crlf)
    out = read_ntu_skeleton(path)
    assert out.shape == (4, 6, 25, 3)
    # Slots follow the order of appearance within each frame, not the body identity.
    np.testing.assert_allclose(out[0, [0, 1, 4, 5]], a[[0, 1, 4, 5]], atol=1e-6)
    np.testing.assert_allclose(out[0, 3], b[3], atol=1e-6)
    np.testing.assert_allclose(out[1, 3], a[3], atol=1e-6)
    assert not out[:, 2].any() and not out[2:].any()


def test_bodies_past_four_are_dropped(tmp_path, rng):
    bodies = [random_body(rng, 1, offset=(i, 0, 3))[0] for i in range(5)]
    path = tmp_path / 'x.skeleton'
    write_skeleton(path, [bodies])
    out = read_ntu_skeleton(path)
    np.testing.assert_allclose(out[:, 0], np.stack(bodies[:4]), atol=1e-6)


def _lines(path):
    return open(path).read().split('\n')


@pytest.mark.parametrize('damage, line, message', [
    (lambda L: L[:40], 40, 'file ends early'),
    (lambda L: L[:3] + ['twenty-five'] + L[4:], 4, 'joint count'),
    (lambda L: L[:3] + ['24'] + L[4:], 4, 'expected 25 joints'),
    (lambda L: L[:1] + ['x'] + L[2:], 2, 'body count'),
    (lambda L: L[:2] + ['1 2 3'] + L[3:], 3, 'expected 10 body fields'),
    (lambda L: L[:6] + ['0.1 0.2'] + L[7:], 7, 'expected 12 joint fields, found 2'),
    (lambda L: L + ['1', 'garbage'], None, 'unexpected content'),
])
def test_malformed_files_name_file_and_line(tmp_path, rng, damage, line, message):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, [[random_body(rng, 1)[0]]] * 3)
    lines = damage(_lines(path))
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    with pytest.raises(DataFormatError, match=message) as info:
        read_ntu_skeleton(path)
    assert str(path) in str(info.value)
    if line is not None:
        assert info.value.line == line and f'line {line}:' in str(info.value)


def test_bad_coordinate_is_reported(tmp_path, rng):
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, [[random_body(rng, 1)[0]]] * 2)
    lines = _lines(path)
    lines[5] = 'nope ' + lines[5].split(' ', 1)[1]
    open(path, 'w').write('\n'.join(lines))
    with pytest.raises(DataFormatError, match="line 6: joint coordinate 'nope' is not a number"):
        read_ntu_skeleton(path)


def test_body_selection_matches_published_energy(rng):
    bodies = np.zeros((4, 30, 25, 3))
    bodies[0, :20] = random_body(rng, 20, motion=0.001)   # nearly static: a spurious detection
    bodies[1, 5:] = random_body(rng, 25, motion=0.1)
    bodies[2] = random_body(rng, 30, motion=0.03)
    energy = [get_nonzero_std(b) for b in bodies]
    chosen = select_bodies(bodies, keep=2)
    np.testing.assert_array_equal(chosen, bodies[np.argsort(energy)[::-1][:2]])


def _reference_normalize(sample):
    """(M, T, V, 3) -> published pre_normalization on the same float32 array."""
    return pre_normalization(sample.transpose(3, 1, 2, 0)[None].copy())[0].transpose(3, 1, 2, 0)


@pytest.mark.parametrize('case', ['one person', 'two persons', 'late start', 'second appears late',
                                  'gap inside', 'empty'])
def test_normalisation_matches_the_published_loops(rng, case):
    sample = np.zeros((2, 300, 25, 3), dtype=np.float32)
    if case != 'empty':
        sample[0, :80] = random_body(rng, 80)
    if case in ('two persons', 'second appears late', 'gap inside'):
        sample[1, :80] = random_body(rng, 80, offset=(0.8, 0, 3.2))
    if case == 'late start':
        sample[0, :7] = 0
    if case == 'second appears late':
        sample[1, :30] = 0
    if case == 'gap inside':
        sample[:, 40:44] = 0
        sample[1, 60:] = 0
    expected = _reference_normalize(sample.copy())
    got = normalize_sample(sample.copy(), NTU25)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    if case != 'empty':
        hip_to_spine = got[0, 0, 1] - got[0, 0, 0]
        assert hip_to_spine[2] / np.linalg.norm(hip_to_spine) > 0.9
        shoulders = got[0, 0, 8] - got[0, 0, 4]
        np.testing.assert_allclose(shoulders[1:], 0, atol=1e-5)
        assert shoulders[0] > 0


def test_zero_persons_and_frames_stay_zero(rng):
    sample = np.zeros((2, 300, 25, 3), dtype=np.float32)
    sample[0, :50] = random_body(rng, 50)
    sample[0, :, 7] = 0  # a joint never tracked
    got = normalize_sample(sample, NTU25)
    assert not got[1].any()
    assert not got[0, :, 7].any()
    # cyclic padding: frame 50 + i repeats frame i
    np.testing.assert_array_equal(got[0, 50:100], got[0, :50])


def test_reader_and_published_reader_agree(tmp_path, rng):
    frames = [[random_body(rng, 1)[0], random_body(rng, 1, offset=(1, 0, 3))[0]] for _ in range(12)]
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, frames, crlf=True)
    ours = select_bodies(read_ntu_skeleton(path), keep=2).transpose(3, 1, 2, 0)
    np.testing.assert_array_equal(ours, read_xyz(str(path)))
