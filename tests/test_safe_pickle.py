"""Pickles are read without running code (utils/safe_pickle.py)."""
import os
import pickle

import numpy as np
import pytest

from feeder.datasets import read_labels
from utils import safe_pickle


class _Payload:
    """Unpickling this would call ``open(path, 'w')``: it creates the file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.mark.parametrize('protocol', [2, 5])
def test_a_crafted_label_file_runs_nothing(tmp_path, protocol):
    marker = tmp_path / 'ran'
    path = tmp_path / 'train_label.pkl'
    path.write_bytes(pickle.dumps((['a'], [_Payload(str(marker))]), protocol=protocol))
    pickle.loads(path.read_bytes())[1][0].close()  # plain pickle would run it ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match=r'train_label.pkl: refused: it asks for io.open'):
        read_labels(path)
    assert not marker.exists()  # ... the restricted one does not


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_label_files_with_plain_or_numpy_labels_round_trip(tmp_path, protocol):
    path = tmp_path / 'labels.pkl'
    for labels in ([0, 3, 1], [np.int64(0), np.int64(3), np.int32(1)]):
        path.write_bytes(pickle.dumps((['x', 'y', 'z'], labels), protocol=protocol))
        names, got = read_labels(path)
        assert names == ['x', 'y', 'z'] and got.tolist() == [0, 3, 1] and got.dtype == np.int64


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_arrays_load_only_where_allowed(tmp_path, protocol):
    record = [{'keypoint': np.arange(24, dtype=np.float16).reshape(1, 2, 4, 3), 'label': np.int64(2),
               'img_shape': (480, 640), 'frame_dir': 'clip'}]
    path = tmp_path / 'annotations.pkl'
    path.write_bytes(pickle.dumps(record, protocol=protocol))
    got = safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS)
    np.testing.assert_array_equal(got[0]['keypoint'], record[0]['keypoint'])
    assert got[0]['keypoint'].dtype == np.float16 and got[0]['label'] == 2 and got[0]['img_shape'] == (480, 640)
    with pytest.raises(ValueError, match='refused: it asks for numpy'):
        safe_pickle.load(path, safe_pickle.NUMPY_SCALARS)


def test_numpy_1_names_are_read_by_numpy_2_and_back(tmp_path):
    # a pickle naming numpy.core (numpy 1) and one naming numpy._core (numpy 2) both load
    data = pickle.dumps(np.arange(3, dtype=np.int16), protocol=2)
    for old, new in ((b'numpy._core.multiarray', b'numpy.core.multiarray'),
                     (b'numpy.core.multiarray', b'numpy._core.multiarray')):
        path = tmp_path / 'a.pkl'
        path.write_bytes(data.replace(old, new))
        assert safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS).tolist() == [0, 1, 2]


def test_garbled_and_truncated_files_are_clear_errors(tmp_path):
    path = tmp_path / 'labels.pkl'
    path.write_bytes(pickle.dumps((['x'], [1]))[:-3])
    with pytest.raises(ValueError, match='labels.pkl: not a readable label file'):
        read_labels(path)
    path.write_bytes(b'not a pickle at all')
    with pytest.raises(ValueError, match='not a readable label file'):
        read_labels(path)
    path.write_bytes(pickle.dumps({'names': ['x']}))
    with pytest.raises(ValueError, match=r'expected a pickled \(sample_names, labels\) tuple'):
        read_labels(path)
    path.write_bytes(pickle.dumps((['x'], [1.5])))
    with pytest.raises(ValueError, match='found labels of type float64'):
        read_labels(path)
    assert not [f for f in os.listdir(tmp_path) if f != 'labels.pkl']
