import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_skeleton(path, frames, crlf=False, joints=25):
    """Write an NTU ``.skeleton`` file; ``frames`` is a list (per frame) of (joints, 3) arrays."""
    rng = np.random.default_rng(len(frames))
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for b, xyz in enumerate(bodies):
            lines.append(f'7205759403793{b:04d} 0 1 1 1 1 0 0.01 -0.02 2')
            lines.append(str(joints))
            for x, y, z in xyz:
                extra = rng.uniform(0, 500, size=4).tolist() + rng.uniform(-1, 1, size=4).tolist()
                lines.append(' '.join(f'{v:.7g}' for v in (x, y, z, *extra)) + ' 2')
    end = '\r\n' if crlf else '\n'
    with open(path, 'w', newline='') as f:
        f.write(end.join(lines) + end)


def random_body(rng, frames, joints=25, offset=(0.0, 0.0, 3.0), motion=0.1):
    """(frames, joints, 3) of a plausible moving body in camera space."""
    base = rng.normal(0, 0.3, size=(1, joints, 3)) + offset
    drift = np.cumsum(rng.normal(0, motion, size=(frames, 1, 3)), axis=0)
    return base + drift + rng.normal(0, 0.01, size=(frames, joints, 3))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
