import numpy as np
import pytest
import torch
import torch.nn.functional as F

from feeder.augment import (center_crop_resize, corrupt_count, crop_lengths, random_crop_resize, random_rotation,
                            random_spatial, resize_window)


def _published_resize(window, frames):
    c, length, v, m = window.shape
    flat = window.permute(0, 2, 3, 1).reshape(c * v * m, length)[None, :, :, None]
    out = F.interpolate(flat, size=(frames, 1), mode='bilinear', align_corners=False)
    return out[0, :, :, 0].reshape(c, v, m, frames).permute(0, 3, 1, 2)


def test_crop_length_rule():
    for n in (1, 10, 63, 64, 65, 100, 300):
        for scale in (0.1, 0.25, 0.5, 0.77, 1.0):
            expected = min(max(int(np.floor(n * scale)), 64), n)
            got = crop_lengths(torch.tensor([n]), torch.tensor([scale], dtype=torch.float64), 64)
            assert got.item() == expected


def test_resize_equals_published_interpolation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 300, 25, 2, generator=gen)
    start = torch.tensor([0, 5, 100, 17, 0])
    length = torch.tensor([300, 64, 7, 150, 1])
    for frames in (64, 50, 16):
        got = resize_window(x, start, length, frames)
        for i in range(5):
            ref = _published_resize(x[i, :, start[i]:start[i] + length[i]], frames)
            torch.testing.assert_close(got[i], ref, atol=1e-5, rtol=1e-5)


def test_random_crop_stays_inside_the_clip_and_keeps_the_minimum():
    # Frame t holds the value t, so the resized output reveals where the window sat.
    n = torch.tensor([300, 120, 40, 64, 200] * 40)
    x = torch.arange(300, dtype=torch.float32).view(1, 1, 300, 1, 1).expand(len(n), 3, 300, 2, 2).contiguous()
    gen = torch.Generator().manual_seed(1)
    out = random_crop_resize(x, n, 64, (0.1, 1.0), generator=gen)[:, 0, :, 0, 0]
    assert out.shape == (len(n), 64)
    assert (out[:, 0] >= 0).all() and (out[:, -1] <= (n - 1)).all()
    assert (out.diff(dim=1) >= 0).all()
    # a window of L frames resized to 64 spans about L - 1 frames of content
    span = out[:, -1] - out[:, 0]
    assert (span >= torch.minimum(n, torch.tensor(64)) - 2).all()
    full = random_crop_resize(x, n, 64, (1.0, 1.0), generator=gen)
    for i in range(5):
        torch.testing.assert_close(full[i], _published_resize(x[i, :, :n[i]], 64))


def test_center_crop_matches_published_rule():
    x = torch.randn(4, 3, 300, 25, 2)
    n = torch.tensor([300, 41, 64, 7])
    got = center_crop_resize(x, n, 64)
    for i in range(4):
        s = int((1 - 0.95) * n[i].item() / 2)
        torch.testing.assert_close(got[i], _published_resize(x[i, :, s:n[i] - s], 64), atol=1e-5, rtol=1e-5)


def _recover(before, after):
    """Classify one augmented sample: ('shear', S) or ('corrupt', joints, matrix or None)."""
    p = before.permute(2, 1, 3, 0).reshape(25, -1, 3).double()   # (V, T*M, 3)
    q = after.permute(2, 1, 3, 0).reshape(25, -1, 3).double()
    changed = [(q[j] - p[j]).abs().max() > 1e-6 for j in range(25)]
    if sum(changed) == 15:
        idx = [j for j in range(25) if changed[j]]
        src, dst = p[idx].reshape(-1, 3), q[idx].reshape(-1, 3)
        if dst.abs().max() == 0:
            return 'corrupt', idx, None
        matrix = torch.linalg.lstsq(src, dst).solution       # dst = src @ A
        assert (src @ matrix - dst).abs().max() < 1e-4
        return 'corrupt', idx, matrix
    src, dst = p.reshape(-1, 3), q.reshape(-1, 3)
    shear = torch.linalg.lstsq(src, dst).solution.T           # dst = (S @ src^T)^T
    assert (src @ shear.T - dst).abs().max() < 1e-4
    return 'shear', shear


def test_spatial_is_shear_or_corruption_of_15_joints():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(400, 3, 8, 25, 2, generator=gen)
    out = random_spatial(x, corrupt_count(25), generator=gen)
    kinds = {'shear': 0, 'zero': 0, 'matrix': 0}
    for i in range(len(x)):
        result = _recover(x[i], out[i])
        if result[0] == 'shear':
            shear = result[1]
            torch.testing.assert_close(torch.diagonal(shear), torch.ones(3, dtype=torch.float64))
            assert shear.abs().max() <= 1 + 1e-5
            kinds['shear'] += 1
        else:
            kinds['zero' if result[2] is None else 'matrix'] += 1
            if result[2] is not None:
                assert result[2].abs().max() <= 1 + 1e-4
    assert 160 <= kinds['shear'] <= 240
    assert 60 <= kinds['zero'] <= 140 and 60 <= kinds['matrix'] <= 140


def test_zero_frames_stay_zero():
    x = torch.randn(50, 3, 20, 25, 2)
    x[:, :, 10:] = 0
    x[:, :, :, :, 1] = 0
    out = random_spatial(x, 15)
    assert (out[:, :, 10:] == 0).all() and (out[..., 1] == 0).all()


@pytest.mark.parametrize('joints, corrupted', [(25, 15), (20, 12), (17, 10)])
def test_corruption_changes_sixty_percent_of_the_joints(joints, corrupted):
    # published: 15 of NTU's 25 joints; per sample either exactly that many joints change
    # (corruption) or all of them (shear)
    torch.manual_seed(0)
    x = torch.randn(64, 3, 6, joints, 2)
    out = random_spatial(x, corrupt_count(joints))
    changed = (out != x).any(dim=(1, 2, 4)).sum(dim=1)
    assert set(changed.tolist()) == {corrupted, joints}


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('frames', [64, 32])
def test_augmentations_keep_dtype_and_device(frames, dtype):
    # the meta device holds no data: any tensor made on the CPU inside the augmentations would
    # meet these inputs and fail, as it would on a GPU
    for device in ('cpu', 'meta'):
        x = torch.randn(3, 3, 300, 20, 1, dtype=dtype, device=device)
        n = torch.tensor([10, 200, 300], device=device)
        for out in (random_spatial(random_crop_resize(x, n, frames), 12), center_crop_resize(x, n, frames)):
            assert out.shape == (3, 3, frames, 20, 1) and out.dtype == dtype and out.device == x.device


def test_rotation_turns_about_the_vertical_axis_within_its_bound():
    torch.manual_seed(0)
    x = torch.randn(200, 3, 4, 25, 2, dtype=torch.float64)
    out = random_rotation(x, 30)
    torch.testing.assert_close(out[:, 2], x[:, 2], rtol=0, atol=0)  # z (up) untouched
    torch.testing.assert_close(out[:, :2].norm(dim=1), x[:, :2].norm(dim=1))  # lengths in the plane kept
    # one angle per sample, within +-30 degrees, spread over that range
    angle = torch.atan2(out[:, 1] * x[:, 0] - out[:, 0] * x[:, 1], (out[:, :2] * x[:, :2]).sum(1))
    per_sample = angle.flatten(1)
    assert (per_sample.std(dim=1) < 1e-9).all()
    degrees = per_sample[:, 0].rad2deg()
    assert degrees.abs().max() <= 30 and degrees.min() < -25 and degrees.max() > 25
    planar = torch.randn(5, 2, 4, 17, 1)  # 2D: turned in the image plane
    assert random_rotation(planar, 10).shape == planar.shape


def test_shear_amplitude_and_corruption_probability():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 6, 25, 2)
    torch.testing.assert_close(random_spatial(x, 15, shear=0.0, corruption=0.0), x)  # neither: identity
    changed = (random_spatial(x, 15, corruption=1.0) != x).any(dim=(1, 2, 4)).sum(dim=1)
    assert (changed == 15).all()  # always corruption
    small = random_spatial(x, 15, shear=0.1, corruption=0.0)
    assert 0 < (small - x).abs().max() <= 0.2 * x.abs().amax(dim=1).max()
    planar = random_spatial(torch.randn(8, 2, 6, 17, 1), 10)  # any number of coordinates
    assert planar.shape == (8, 2, 6, 17, 1)


def test_pretraining_and_pictures_build_their_views_from_the_same_arguments():
    import argparse
    from feeder.augment import ViewAugment
    from feeder.layouts import NTU25
    from models.method import normal
    args = argparse.Namespace(frames=8, min_crop=None, shear=0.5, corruption=0.2, rotation=10.0, fix_defects=True)
    augment = ViewAugment.from_args(args, NTU25, 2, (normal, normal), ['fix_defects'])
    assert (augment.frames, augment.min_crop, augment.shear, augment.corruption, augment.rotation) == (8, 8, 0.5, 0.2, 10)
    assert augment.corrupt_joints == 15 and augment.coordinates == 2 and augment.mirror == NTU25.mirror
    assert augment.options == {'fix_defects': True} and augment.names == ('normal', 'normal')
    args.min_crop = 4
    assert ViewAugment.from_args(args, NTU25, None, (normal,)).min_crop == 4
