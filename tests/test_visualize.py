"""The pictures: a clip with its two views (GIF and PNG) and a run's curves."""
import json

import numpy as np
import pytest
from PIL import Image

import visualize
from feeder.layouts import KINECT_V1_20
from utils.plots import save_clip_pictures, save_curves


def _run(*argv):
    return visualize.main(visualize.get_visualize_parser().parse_args([str(a) for a in argv]))


def test_a_prepared_clip_and_its_views(data_root, tmp_path, capsys):
    _run('clip', '--dataset', 'synthetic', '--data-root', data_root, '--part', 'val', '--index', '2',
         '--frames', '12', '--out', tmp_path / 'clip')
    gif = Image.open(tmp_path / 'clip.gif')
    length = int(np.load(data_root / 'xsub' / 'val_num_frame.npy')[2])
    assert gif.n_frames == max(length, 12)  # the longest of the clip and its two 12-frame views
    strip = Image.open(tmp_path / 'clip.png')
    assert strip.height > 3 * 100 and strip.width > 8 * 100  # three rows of eight frames
    with pytest.raises(ValueError, match='--name nope: no such clip'):
        _run('clip', '--dataset', 'synthetic', '--data-root', data_root, '--name', 'nope')
    with pytest.raises(ValueError, match=r'--index 999: .* has clips 0\.\.'):
        _run('clip', '--dataset', 'synthetic', '--data-root', data_root, '--index', '999')


def test_2d_clips_are_drawn_in_the_plane(tmp_path):
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(2, 10, 20, 1)).astype(np.float32)
    save_clip_pictures(KINECT_V1_20, {'2d': clip}, tmp_path / 'a.gif', tmp_path / 'a.png', columns=4)
    assert Image.open(tmp_path / 'a.gif').n_frames == 10 and Image.open(tmp_path / 'a.png').width > 0


def test_curves_of_a_run(tmp_path):
    log = tmp_path / 'log.txt'
    records = [{'epoch': e, 'loss': 9.0 - e, 'infonce_joint': 3.0, 'cmd': 1.0, 'acc_joint': 10.0 * e,
                'lr': 0.05, 'samples_per_s': 100.0} for e in range(4)]
    records[-1].update(knn1_joint=50.0, knn20_joint=40.0)
    log.write_text(''.join(json.dumps(r) + '\n' for r in records))
    _run('curves', log)
    picture = Image.open(tmp_path / 'curves.png')
    assert picture.width > 3 * picture.height  # four panels side by side
    log.write_text('{"epoch": 0}\nnot json\n')
    with pytest.raises(ValueError, match='log.txt, line 2: not a JSON line'):
        save_curves(log, tmp_path / 'x.png')
