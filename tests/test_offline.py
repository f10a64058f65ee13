"""The ST-GCN methods' offline step (feeder/offline.py; docs/protocols.md): against the published
steps written out frame by frame, its place in pretraining and evaluation, and its recipe."""
import json
import math

import numpy as np
import pytest
import torch

import knn_eval
from feeder.layouts import NTU25
from feeder.offline import fifty_frames, valid_length
from options.presets import recipe
from tests.conftest import run_pretrain


def published_step(clip, length, frames=50):
    """The published steps, one frame and person at a time: joint 21 subtracted, each joint's track
    resized by linear interpolation with half-pixel centres, then each frame turned about the
    vertical so that shoulder 9 minus shoulder 5 lies along x, the direction of the turn set per
    person by the sign of that vector's summed depth."""
    c, _, v, m = clip.shape
    centred = clip - clip[:, :, 20:21]
    out = np.zeros((c, frames, v, m))
    for t in range(frames):
        src = min(max((t + 0.5) * length / frames - 0.5, 0.0), length - 1)
        lo = int(math.floor(src))
        hi, w = min(lo + 1, length - 1), src - math.floor(src)
        out[:, t] = centred[:, lo] * (1 - w) + centred[:, hi] * w
    for person in range(m):
        vector = out[:, :, 8, person] - out[:, :, 4, person]
        sign = -1.0 if vector[1].sum() >= 0 else 1.0
        for t in range(frames):
            x, y = vector[0, t], vector[1, t]
            theta = sign * math.acos(x / (math.sqrt(x * x + y * y) + 1e-4))
            turn = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
            out[:, t, :, person] = turn @ out[:, t, :, person]
    return out


@pytest.mark.parametrize('frames', [37, 50, 81])
def test_the_fifty_frame_step_is_the_published_one_written_out(frames):
    generator = torch.Generator().manual_seed(frames)
    clip = torch.randn(3, frames, 25, 2, generator=generator, dtype=torch.float64)
    clip[:, :, :, 1] *= 0.5
    if frames == 81:  # nobody second, and the first person's last frames empty: they do not count
        clip[:, :, :, 1] = 0
        clip[:, -6:] = 0
    length = valid_length(clip)
    assert length == (75 if frames == 81 else frames)
    out = fifty_frames(clip, NTU25)
    expected = published_step(clip.numpy(), length)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)
    shoulders = out[:, :, 8, 0] - out[:, :, 4, 0]  # along +x where the turn's direction was right
    assert (shoulders[1].abs() < 1e-3 * shoulders.norm(dim=0) + 1e-9).float().mean() > 0.5
    assert torch.equal(out[:, :, 20], torch.zeros_like(out[:, :, 20]))  # centred on joint 21


def test_a_clip_with_no_valid_frame_gives_zeros():
    assert torch.equal(fifty_frames(torch.zeros(3, 12, 25, 2), NTU25), torch.zeros(3, 50, 25, 2))


def test_it_is_the_st_gcn_methods_default_on_ntu_and_pku_alone():
    for method in ('skeletonclr', 'crossclr', 'aimclr'):
        for kind in ('ntu60', 'ntu120', 'pku1', 'pku2'):
            values, sources = recipe(kind, method=method)
            assert values['offline_step'] == 'stgcn50' and sources['offline_step'] == f'method recipe ({method})'
        assert recipe('ucla', method=method)[0]['offline_step'] == 'none'
    assert recipe('ntu60', method='cmd')[0]['offline_step'] == recipe('ntu60', method='mamp')[0]['offline_step'] == 'none'


def test_pretraining_and_evaluation_read_the_fifty_frame_clips(data_root, tmp_path):
    out = tmp_path / 'run'
    run_pretrain(data_root, out, '--method', 'skeletonclr', '--epochs', '1', '--frames', '50', '--knn-every', '0',
                 '--offline-step', 'stgcn50')
    args = json.loads((out / 'args.json').read_text())
    assert args['offline_step'] == 'stgcn50' and args['sources']['offline_step'] == 'command line'
    result = knn_eval.main(knn_eval.get_knn_parser().parse_args(
        ['--dataset', 'synthetic', '--data-root', str(data_root), '--checkpoint', str(out / 'checkpoint.pth'),
         '--workers', '0', '--device', 'cpu', '--k', '1', '--output-dir', str(tmp_path / 'knn')]))
    settings = json.loads((tmp_path / 'knn' / 'results.json').read_text())['settings']
    assert settings['offline_step'] == 'stgcn50' and 0 <= result['accuracy']['joint']['top1@k=1'] <= 100
