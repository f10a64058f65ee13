import numpy as np
import pytest

from feeder.raw.normalize import _centre_and_turn, normalize_sample, pad_cyclic, select_bodies
from feeder.layouts import NTU25
from feeder.raw import readers
from feeder.raw.readers import NTU_COLOR, NTU_XYZ, DataFormatError, parse_ntu_name, read_ntu_skeleton
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
    (lambda L: L[:1] + ['-1'] + L[2:], 2, 'body count'),
    (lambda L: ['-3'] + L[1:], 1, 'frame count'),
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


@pytest.mark.parametrize('case', ['one person', 'two persons', 'gap inside', 'joint never tracked', 'all frames'])
def test_a_shared_span_is_turned_once_and_repeated_as_padding_everything_would(rng, case):
    length = 300 if case == 'all frames' else 77
    sample = np.zeros((2, 300, 25, 3), dtype=np.float32)
    sample[0, :length] = random_body(rng, length)
    if case != 'one person':
        sample[1, :length] = random_body(rng, length, offset=(0.8, 0, 3.2))
    if case == 'gap inside':
        sample[:, 30:33] = 0
    if case == 'joint never tracked':
        sample[:, :, 7] = 0
    padded = sample.copy()
    for person in padded:
        pad_cyclic(person)
    expected = _centre_and_turn(padded, NTU25)
    got = normalize_sample(sample, NTU25)
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


def test_reader_and_published_reader_agree(tmp_path, rng):
    frames = [[random_body(rng, 1)[0], random_body(rng, 1, offset=(1, 0, 3))[0]] for _ in range(12)]
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, frames, crlf=True)
    ours = select_bodies(read_ntu_skeleton(path), keep=2).transpose(3, 1, 2, 0)
    np.testing.assert_array_equal(ours, read_xyz(str(path)))


# ----------------------------------------------------------------- the array reader against float()

ODD_NUMBERS = ['1.', '.5', '-.5', '+3', '-0', '-0.0', '0.000', '1_0', '007', '1e3', '-4.248406E-05', '1E+2',
               '99999999999999', '-0.9999999999999', '999999999999999', '1234567890123456', '12345678901234567',
               '0.00000000000001', '123456.7890123', '-1234567.8901', '9007199254740993', '0.9007199254740993',
               '-8.999999999999999', '1.000000000000001', '99999999999999.9', '9999999.99999997',
               '1e400', '0x10', 'nan', 'inf', '-inf', '-', '.', '-.', '1.2.3', '--1', '-+1', 'e5', '1e', '5-', '1-2',
               'abc', '１']


def _numbers(rng):
    """Numbers as files write them: several printf forms across magnitudes, and ODD_NUMBERS."""
    forms = ['%.7g', '%.9g', '%.17g', '%.3f', '%.1f', '%d', '%.7E', '%e', '%r']
    values = rng.uniform(-1, 1, 3000) * 10.0 ** rng.integers(-9, 9, 3000)
    return [(f % v if f != '%d' else str(int(v))) for f, v in zip(rng.choice(forms, 3000), values)] + ODD_NUMBERS


def _read(tokens):
    data = ' '.join(tokens).encode()
    ends = np.cumsum([len(t.encode()) + 1 for t in tokens]) - 1
    return readers._decimals(data, ends - [len(t.encode()) for t in tokens], ends)


def _float_or_none(token):
    try:
        value = float(token.encode())   # as bytes, the way files are read: b'\xef\xbc\x91' is no number
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def test_decimals_are_read_exactly_as_float_reads_them(rng, monkeypatch):
    tokens = _numbers(rng)
    good = [t for t in tokens if _float_or_none(t) is not None]
    expected = np.array([_float_or_none(t) for t in good])
    got = _read(good)
    # bit for bit, the sign of zero included
    np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))
    for token in tokens:
        if _float_or_none(token) is None:
            assert _read(['1.5', token]) is None, token
    # plain decimals are read by the array path: float() sees only the others
    seen = []
    monkeypatch.setattr(readers, 'float', lambda text: seen.append(text) or float(text), raising=False)
    assert _read(['-0.8514767', '3.384463', '178', '-.5', '1.', '-4.248406E-05', '+3'])[-2] == -4.248406e-05
    assert seen == [b'-4.248406E-05', b'+3']


def _damage(data, rng):
    """One or two random edits of a file's bytes, of the kinds that break or merely reformat a line."""
    if rng.random() < 0.5:
        data = _damage_once(data, rng)
    return _damage_once(data, rng)


def _damage_once(data, rng):
    at = int(rng.integers(len(data)))
    kind = rng.integers(4)
    if kind == 0:
        return data[:at] + data[at + 1:]
    if kind == 1:
        return data[:at] + bytes([rng.choice(list(b' \t\n\r.-+eE0123456789x'))]) + data[at:]
    if kind == 2:
        return data[:at] + bytes([rng.choice(list(b'0123456789 -.e'))]) + data[at + 1:]
    lines = data.split(b'\n')
    k = int(rng.integers(len(lines)))
    return b'\n'.join(lines[:k] + [lines[k]] + lines[k:])


def _outcome(read):
    try:
        return read()
    except DataFormatError as e:
        return str(e)


def test_array_reader_accepts_and_reads_exactly_what_the_line_reader_does(tmp_path, rng):
    a, b = random_body(rng, 5), random_body(rng, 5, offset=(1, 0, 3))
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, [[a[0]], [a[1], b[1]], [], [b[3], a[3]], [a[4], b[4], a[4], b[4], a[4]]])   # 5: one dropped
    clean = path.read_bytes()
    taken = 0
    for _ in range(600):
        data = _damage(clean, rng)
        path.write_bytes(data)
        for columns in (NTU_XYZ, NTU_COLOR):
            fast = readers._read_ntu_fast(data, 4, 25, columns)
            lines = _outcome(lambda: readers._read_ntu_lines(path, data, 4, 25, columns))
            if fast is not None:
                taken += 1
                assert isinstance(lines, np.ndarray), (data, lines)
                np.testing.assert_array_equal(fast.view(np.int64), lines.view(np.int64))
            got = _outcome(lambda: read_ntu_skeleton(path, columns=columns))
            assert type(got) is type(lines) and (np.array_equal(got, lines) if isinstance(got, np.ndarray) else got == lines)
    assert taken > 100   # edits that keep a file valid and plain (a digit for a digit) take the array path


@pytest.mark.parametrize('frames', [[1] * 5, [2, 0, 5, 1, 3]])
def test_plain_files_take_the_array_path(tmp_path, rng, frames):
    bodies = [[random_body(rng, 1, offset=(k, 0, 3))[0] for k in range(n)] for n in frames]
    path = tmp_path / 'S001C001P001R001A001.skeleton'
    write_skeleton(path, bodies)
    data = path.read_bytes()
    for columns in (NTU_XYZ, NTU_COLOR):
        fast = readers._read_ntu_fast(data, 4, 25, columns)
        assert fast is not None
        np.testing.assert_array_equal(fast, readers._read_ntu_lines(path, data, 4, 25, columns))
