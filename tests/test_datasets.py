import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fast.step import prefetch_views
from models.method import normal
from feeder.datasets import DownstreamDataset, PretrainDataset, SkeletonFolder
from tests.conftest import augment


def _folder(root, n=6, joints=25, persons=2, frames=(30, 120, 300, 400, 70, 64)):
    root.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).normal(size=(n, 3, 300, joints, persons)).astype(np.float32)
    np.save(root / 'train_data_joint.npy', data)
    np.save(root / 'train_num_frame.npy', np.array(frames[:n]))
    with open(root / 'train_label.pkl', 'wb') as f:
        pickle.dump(([f's{i}' for i in range(n)], list(range(n))), f)
    return data


def test_folder_reads_clips_clamped_to_300(tmp_path):
    data = _folder(tmp_path)
    folder = SkeletonFolder(str(tmp_path), 'train')
    assert len(folder) == 6 and folder.num_joints == 25
    assert folder.num_frames.tolist() == [30, 120, 300, 300, 70, 64]
    np.testing.assert_array_equal(folder.clip(1).numpy(), data[1, :, :120])


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing train_data_joint.npy.*feeder.prepare'):
        SkeletonFolder(str(tmp_path), 'train')
    _folder(tmp_path)
    np.save(tmp_path / 'train_num_frame.npy', np.array([10, 20]))
    with pytest.raises(ValueError, match='disagree on the sample count'):
        SkeletonFolder(str(tmp_path), 'train')
    np.save(tmp_path / 'train_data_joint.npy', np.zeros((6, 3, 64, 25, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r'expected an array \(N, C, 300, V, M\) with C 2 or 3'):
        SkeletonFolder(str(tmp_path), 'train')
    with pytest.raises(ValueError, match='part must be one of'):
        SkeletonFolder(str(tmp_path), 'test')


def test_pretrain_views_differ_and_load_in_workers(tmp_path):
    _folder(tmp_path)
    dataset = PretrainDataset(SkeletonFolder(str(tmp_path), 'train'), augment((normal, normal), frames=32))
    loader = DataLoader(dataset, batch_size=3, num_workers=2)
    batches = list(loader)
    view1, view2 = batches[0]
    assert view1.shape == view2.shape == (3, 3, 32, 25, 2)
    assert not torch.equal(view1, view2)


def test_downstream_test_crop_is_deterministic(tmp_path):
    _folder(tmp_path, joints=20, persons=1)
    folder = SkeletonFolder(str(tmp_path), 'train')
    test = DownstreamDataset(folder, frames=16, train=False)
    (a, label), (b, _) = test[2], test[2]
    assert torch.equal(a, b) and label == 2 and a.shape == (3, 16, 20, 1)
    train = DownstreamDataset(folder, frames=16, train=True)
    assert train[3][0].shape == (3, 16, 20, 1)


def test_raw_clips_collate_and_augment_as_a_batch(tmp_path):
    from feeder.datasets import collate_clips
    data = _folder(tmp_path)
    dataset = PretrainDataset(SkeletonFolder(str(tmp_path), 'train'))
    clips, lengths = collate_clips([dataset[i] for i in (0, 1, 4)])
    assert clips.shape == (3, 3, 120, 25, 2) and lengths.tolist() == [30, 120, 70]
    np.testing.assert_array_equal(clips[2, :, :70].numpy(), data[4, :, :70])
    assert (clips[0, :, 30:] == 0).all()
    view_q, view_k = augment((normal, normal), frames=16)(clips, lengths)
    assert view_q.shape == view_k.shape == (3, 3, 16, 25, 2) and not torch.equal(view_q, view_k)


def test_prefetched_views_equal_views_made_in_turn():
    batches = [(torch.randn(4, 3, 20, 25, 2), torch.randint(5, 21, (4,))) for _ in range(3)]
    views = augment((normal, normal), frames=8)
    torch.manual_seed(0)
    expected = [views(clips, lengths) for clips, lengths in batches]
    torch.manual_seed(0)
    got = list(prefetch_views(batches, torch.device('cpu'), views))
    assert len(got) == 3
    for (a, b), (c, d) in zip(expected, got):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert list(prefetch_views([], torch.device('cpu'))) == []
