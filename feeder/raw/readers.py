"""Readers for the raw dataset files; each returns float arrays in (person, frame, joint, coordinate)."""
import json
import os
import re

import numpy as np

NTU_NAME = re.compile(r'S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})')


class DataFormatError(ValueError):
    """A raw file that does not follow its format; the message names the file and line."""

    def __init__(self, path, line, message):
        where = f'{path}, line {line}' if line else str(path)
        super().__init__(f'{where}: {message}')
        self.path = str(path)
        self.line = line


def parse_ntu_name(name):
    """``SsssCcccPpppRrrrAaaa`` -> dict of setup, camera, subject, replication, action (1-based)."""
    match = NTU_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f'{name!r} is not an NTU sample name (expected SsssCcccPpppRrrrAaaa)')
    keys = ('setup', 'camera', 'subject', 'replication', 'action')
    return dict(zip(keys, map(int, match.groups())))


def _int_field(line, path, lineno, what):
    try:
        value = int(line)
    except ValueError:
        value = -1
    if value < 0:
        raise DataFormatError(path, lineno, f'expected {what} (a whole number), found {line.strip()[:60]!r}')
    return value


# The joint fields read: x, y, z in metres (camera space), or colorX, colorY in pixels of the
# 1920 x 1080 colour image (every file carries both), of the 12 on each joint line.
NTU_XYZ, NTU_COLOR = (0, 1, 2), (5, 6)
NTU_JOINT_FIELDS = 12


def _check_joint_lines(path, lines, start, end):
    """Raise for the first of a body's joint lines (``start`` to ``end``, 0-based) that does not
    hold the 12 joint fields; a missing last line means the file ends early."""
    for k in range(start, end):
        count = len(lines[k].split())
        if count != NTU_JOINT_FIELDS:
            if not count and k == len(lines) - 1:
                raise IndexError
            raise DataFormatError(path, k + 1, f'expected {NTU_JOINT_FIELDS} joint fields, found {count}')


def read_ntu_skeleton(path, max_bodies=4, num_joints=25, columns=NTU_XYZ):
    """Parse an NTU ``.skeleton`` file into (max_bodies, T, num_joints, len(columns)) float64;
    ``columns``: the joint fields to read (``NTU_XYZ`` or ``NTU_COLOR``).

    Bodies fill slots in the order they appear within each frame (not by body ID); bodies past
    ``max_bodies`` are dropped, as in the published tool. A file laid out as the dataset's files
    are (fields parted by single spaces, lines by ``\\n``) is read by array operations over its
    bytes; any other file, or any doubt, goes to a line-by-line reader that accepts the same files,
    gives the same numbers and names the line of the first fault.
    """
    with open(path, 'rb') as f:
        data = f.read()
    out = _read_ntu_fast(data, max_bodies, num_joints, columns)
    if out is None:
        out = _read_ntu_lines(path, data, max_bodies, num_joints, columns)
    return out


def _read_ntu_lines(path, data, max_bodies, num_joints, columns):
    lines = data.split(b'\n')
    if not lines[0].strip():
        raise DataFormatError(path, 1, 'empty file, expected the frame count')
    num_frames = _int_field(lines[0], path, 1, 'the frame count')
    # slot_lines: 0-based line of each slot's first joint; fields: one list per column read
    slots, slot_lines, fields = [], [], [[] for _ in columns]
    i = 1
    try:
        for t in range(num_frames):
            num_bodies = _int_field(lines[i], path, i + 1, f'the body count of frame {t}')
            i += 1
            for b in range(num_bodies):
                if len(lines[i].split()) != 10:
                    raise DataFormatError(path, i + 1, f'expected 10 body fields, found {len(lines[i].split())}')
                joints = _int_field(lines[i + 1], path, i + 2, 'the joint count')
                if joints != num_joints:
                    raise DataFormatError(path, i + 2, f'expected {num_joints} joints, found {joints}')
                start = i + 2
                i = start + joints
                if i > len(lines):
                    raise IndexError
                if b < max_bodies:
                    slots.append((t, b))
                    slot_lines.append(start)
                    # one split for the body's joint lines; a count off 12 each is then found by line
                    tokens = b' '.join(lines[start:i]).split()
                    if len(tokens) != NTU_JOINT_FIELDS * joints:
                        _check_joint_lines(path, lines, start, i)
                    for c, column in zip(columns, fields):
                        column += tokens[c::NTU_JOINT_FIELDS]
    except IndexError:
        raise DataFormatError(path, len(lines), f'file ends early: expected {num_frames} frames') from None
    if any(line.strip() for line in lines[i:]):
        extra = next(k for k in range(i, len(lines)) if lines[k].strip())
        raise DataFormatError(path, extra + 1, f'unexpected content after the last of {num_frames} frames')
    try:
        xyz = np.stack([np.array(column, dtype=np.float64) for column in fields], axis=-1)
    except ValueError:
        for column in fields:
            for k, value in enumerate(column):
                try:
                    float(value)
                except ValueError:
                    slot, joint = divmod(k, num_joints)
                    raise DataFormatError(path, slot_lines[slot] + joint + 1,
                                          f'joint coordinate {value.decode(errors="replace")!r} is not a number') from None
        raise
    bad = np.argwhere(~np.isfinite(xyz))
    if len(bad):
        (k, c), (slot, joint) = bad[0], divmod(bad[0][0], num_joints)
        raise DataFormatError(path, slot_lines[slot] + joint + 1,
                              f'joint coordinate {fields[c][k].decode(errors="replace")!r} is not finite')
    out = np.zeros((max_bodies, num_frames, num_joints, len(columns)))
    if slots:
        t, b = np.array(slots).T
        out[b, t] = xyz.reshape(len(slots), num_joints, len(columns))
    return out


_WIDTH = 16   # characters a number may take on the array path; longer ones go to float()
_POWERS = 10.0 ** np.arange(_WIDTH - 1, -1, -1)   # a right-aligned character's place value
# row k: a mask that clears a row's first k characters, as the two 8-byte words of the row
_KEEP = np.where(np.tri(_WIDTH + 1, _WIDTH, -1, dtype=bool), 0, 255).astype(np.uint8).view(np.uint64)
_ONES = np.uint64(0x0101010101010101)   # a 1 in every byte of a word


def _read_ntu_fast(data, max_bodies, num_joints, columns):
    """``read_ntu_skeleton`` by array operations, or None where the file is not plainly laid out
    or not valid (the line reader then decides, and names the fault)."""
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.append(newlines, len(buf))
    space = buf == 32
    spaces = np.flatnonzero(space)
    # Only single spaces and newlines as white space: a line's fields are then its spaces plus one.
    if np.count_nonzero(buf < 33) != len(newlines) + len(spaces) or (space[1:] & space[:-1]).any():
        return None
    line = starts.tolist()
    heads, counts = [], []   # each frame's body-count line, and that count
    i = 1
    try:   # int() ignores the newline that ends the slice
        num_frames = int(data[line[0]:line[1]])
        for _ in range(num_frames):
            heads.append(i)
            counts.append(int(data[line[i]:line[i + 1]]))
            i += 1 + counts[-1] * (2 + num_joints)
    except (ValueError, IndexError):
        return None
    if i > len(line) or starts[i:].tolist() != ends[i:].tolist() or min(counts + [num_frames]) < 0:
        return None   # truncated, more after the last frame, or a count the line reader should judge
    counts = np.array(counts, dtype=np.int64)
    frame = np.repeat(np.arange(num_frames), counts)
    slot = np.arange(len(frame)) - np.repeat(np.cumsum(counts) - counts, counts)
    bodies = np.array(heads, dtype=np.int64)[frame] + 1 + slot * (2 + num_joints)
    # each body's joint count, written as the dataset writes it
    written = str(num_joints).encode()
    if (ends[bodies + 1] - starts[bodies + 1] != len(written)).any() or any(
            (buf[starts[bodies + 1] + k] != c).any() for k, c in enumerate(written)):
        return None
    kept = slot < max_bodies
    joints = ((bodies[kept] + 2)[:, None] + np.arange(num_joints)).ravel()
    lo, hi = starts[joints], ends[joints]
    field = np.searchsorted(spaces, lo)   # each joint line's first space
    # a body's joint lines follow one another, so a line's spaces end where the next line's begin
    blocks_end = np.searchsorted(spaces, hi[num_joints - 1::num_joints])[:, None]
    joint_spaces = np.diff(np.hstack((field.reshape(-1, num_joints), blocks_end)), axis=1)
    body_spaces = np.searchsorted(spaces, ends[bodies]) - np.searchsorted(spaces, starts[bodies])
    if (joint_spaces != NTU_JOINT_FIELDS - 1).any() or (body_spaces != 9).any():
        return None
    if (buf[np.concatenate((lo, hi - 1, starts[bodies], ends[bodies] - 1))] == 32).any():   # none empty now
        return None
    # each column's characters: from the line's start or the space before, to the space after
    spans = [(lo if c == 0 else spaces[field + c - 1] + 1, hi if c == NTU_JOINT_FIELDS - 1 else spaces[field + c])
             for c in columns]
    values = _decimals(data, np.concatenate([s for s, _ in spans]), np.concatenate([e for _, e in spans]))
    if values is None:
        return None
    out = np.zeros((max_bodies, num_frames, num_joints, len(columns)))
    out[slot[kept], frame[kept]] = values.reshape(len(columns), -1, num_joints).transpose(1, 2, 0)
    return out


def _decimals(data, lo, hi):
    """float64 of the numbers ``data[lo:hi]`` (none empty), each as Python's ``float`` reads it, or
    None where one is not a finite number.

    Plain decimals (``-12.345``, up to 14 digits) are read by array operations on their characters,
    right-aligned in rows of 16 bytes (two 8-byte words): the digits make an exact integer, which
    one division by a power of ten rounds correctly, as ``float`` does (both operands are exact
    doubles). The others (exponents, a ``+`` sign, longer numbers) go through ``float`` one by
    one. Each step is elementwise over the words or bytes: numpy's row-wise reductions and
    ``where`` over 16 columns would cost more than all the rest.
    """
    n, length = len(lo), hi - lo
    padded = np.concatenate((np.zeros(_WIDTH, np.uint8), np.frombuffer(data, np.uint8)))
    windows = np.ndarray((len(padded) - _WIDTH + 1,), f'V{_WIDTH}', padded, strides=(1,))   # from each offset
    row = windows[hi].view(np.uint64).reshape(n, 2)   # the 16 bytes before hi (padded shifts by 16)
    fits = length <= _WIDTH
    negative = fits & (padded[lo + _WIDTH] == 45)
    # what lies left of the number and its sign become zero digits, then its point
    digits = row.view(np.uint8) - np.uint8(48)
    digits.view(np.uint64)[:] &= _KEEP.take(np.where(fits, _WIDTH - length, 0) + negative, axis=0)
    dot = (digits == 254).view(np.uint8)   # '.' - '0', wrapped
    dot_words = dot.view(np.uint64)
    # a word's 0/1 bytes summed by one multiplication into its top byte (numpy 1.x has no bitwise_count)
    in_word = (dot_words * _ONES) >> np.uint64(56)
    dots = (in_word[:, 0] + in_word[:, 1]).astype(np.int64)
    digits.view(np.uint64)[:] &= ~(dot_words * np.uint64(255))
    other = (digits >= 10).view(np.uint64)
    count = length - negative - dots
    plain = fits & (dots <= 1) & (count >= 1) & (count <= 14) & ((other[:, 0] | other[:, 1]) == 0)
    # the point's place: a word holding one 1 byte is 2 ** (8 * byte), read off its float exponent
    low = dot_words[:, 0] != 0
    word = np.where(low, dot_words[:, 0], dot_words[:, 1]).astype(np.float64)
    place = ((word.view(np.int64) >> 52) - 1023) // 8 + np.where(low, 0, 8)
    decimals = np.where(dots == 1, _WIDTH - 1 - place, 0).astype(np.int64)
    scale = _POWERS[_WIDTH - 1 - decimals]
    # with a point, the row reads left * 10 ** (decimals + 1) + right
    joined = digits @ _POWERS
    right = np.fmod(joined, scale)
    values = np.where(dots == 1, (joined - right) / 10 + right, joined) / scale
    values = np.where(negative, -values, values)
    for k in np.flatnonzero(~plain).tolist():
        try:
            values[k] = float(data[lo[k]:hi[k]])
        except ValueError:
            return None
    return values if np.isfinite(values).all() else None


def read_pku_video(path):
    """A PKU-MMD skeleton file: one line per frame of 150 numbers -> (2, T, 25, 3) float32."""
    try:
        data = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise DataFormatError(path, None, f'expected 150 numbers per line ({e})') from None
    if data.shape[1] != 150:
        raise DataFormatError(path, 1, f'expected 150 numbers per line, found {data.shape[1]}')
    bad = np.argwhere(~np.isfinite(data))
    if len(bad):
        raise DataFormatError(path, _data_line(path, bad[0][0]), f'number {bad[0][1] + 1} is not finite')
    return data.reshape(len(data), 2, 25, 3).transpose(1, 0, 2, 3)


def read_pku_labels(path):
    """PKU-MMD label file -> list of (class 1-based, start, end) rows."""
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.replace(' ', '').split(',')
            try:
                cls, start, end = int(parts[0]), int(parts[1]), int(parts[2])
            except (ValueError, IndexError):
                raise DataFormatError(path, lineno,
                                      f'expected "class,start,end,confidence", found {line.strip()!r}') from None
            if end <= start:
                raise DataFormatError(path, lineno, f'action ends (frame {end}) before it starts ({start})')
            rows.append((cls, start, end))
    return rows


def read_pku_split(path):
    """PKU-MMD split file -> (train ids, val ids or None): line 2 trains, line 4 (if any) tests."""
    with open(path) as f:
        lines = f.read().splitlines()

    def ids(line):
        return [v.strip() for v in line.split(',') if v.strip()]

    if len(lines) < 2 or not ids(lines[1]):
        raise DataFormatError(path, 2, 'expected the training video ids on the second line')
    val = ids(lines[3]) if len(lines) > 3 and ids(lines[3]) else None
    return ids(lines[1]), val


def read_ucla_json(path):
    """NW-UCLA ``all_sqe`` json -> (name, (1, T, 20, 3) float32)."""
    try:
        with open(path) as f:
            record = json.load(f)
        skeletons = np.asarray(record['skeletons'], dtype=np.float32)
        name = record.get('file_name', os.path.splitext(os.path.basename(path))[0])
    except (ValueError, KeyError, TypeError) as e:
        raise DataFormatError(path, None, f'expected {{"file_name", "skeletons": [T][20][3], "label"}} ({e!r})') from None
    if skeletons.ndim != 3 or skeletons.shape[1:] != (20, 3):
        raise DataFormatError(path, None, f'expected skeletons of shape [T][20][3], found {list(skeletons.shape)}')
    bad = np.argwhere(~np.isfinite(skeletons))
    if len(bad):
        frame, joint, _ = bad[0]
        raise DataFormatError(path, _first_line_with(path, ('NaN', 'Infinity')),
                              f'frame {frame}, joint {joint}: coordinate is not finite')
    return name, skeletons[None]


def _data_line(path, row):
    """The 1-based line of data row ``row`` in a text file (blank lines, which np.loadtxt skips,
    counted)."""
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                if row == 0:
                    return lineno
                row -= 1
    return None


def _first_line_with(path, words):
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if any(word in line for word in words):
                return lineno
    return None
