"""Frozen features out, for any dataset and any checkpoint (ours, the authors' released files, or a
random encoder).

    python extract_features.py --checkpoint CKPT --dataset D --data-root DIR --protocol P --out FEATURES.npz \\
        [--stream joint|motion|bone|all] [--parts train val]

writes, with no object arrays (``np.load`` needs no ``allow_pickle``): ``names_<part>``,
``labels_<part>`` (-1 where unlabelled), ``<stream>_<part>`` (float32, N x D: the features before
``fc`` that kNN uses, on the centre-cropped clips), ``fused_<part>`` with ``--stream all`` (the
three L2-normalised features side by side, as kNN fuses them), and ``checkpoint`` and
``checkpoint_sha256``. From Python: :func:`evaluation.pretrained.feature_extractors`.
"""
import argparse
import os

import numpy as np

from evaluation.common import setup_evaluation
from evaluation.features import extract_features
from evaluation.knn import with_fusion
from evaluation.pretrained import file_hash
from feeder.info import PARTS
from options.args import get_args_parser, get_eval_parser
from options.presets import KNN
from utils.io import write_atomic
from utils.run import run_cli


def get_extract_parser():
    parser = argparse.ArgumentParser('CMD feature export', parents=[get_args_parser(), get_eval_parser()],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='the .npz file to write')
    parser.add_argument('--parts', nargs='+', default=None, choices=PARTS,
                        help="the benchmark's parts to export (default: every part it has)")
    return parser


def main(args):
    if os.path.isdir(args.out):
        raise SystemExit(f'error: --out {args.out} is a folder; expected a .npz file to write')
    run = setup_evaluation(args, KNN, output_required=False, protocol='features')
    args = run.args
    parts = args.parts or [p for p in PARTS if os.path.isfile(os.path.join(run.root, f'{p}_data_joint.npy'))]
    encoders, info, _ = run.load_encoders()
    path = info['checkpoint']
    arrays = {'checkpoint': np.array(path or info['kind']), 'checkpoint_sha256': np.array(file_hash(path, 64) if path else '')}
    for part in parts:
        clips = run.clips(part, info['frames'], labelled=False)
        feats, labels = extract_features(encoders, clips, run.device, args.batch_size, args.workers)
        for name, value in with_fusion(feats, run.streams).items():
            arrays[f'{name}_{part}'] = value.float().cpu().numpy()
        arrays[f'names_{part}'] = np.array(clips.folder.names, dtype=str)
        arrays[f'labels_{part}'] = labels.cpu().numpy().astype(np.int64)
        dims = ', '.join(f'{name} {value.shape[1]}' for name, value in feats.items())
        print(f'{part}: {len(labels)} clips; features {dims}')
    write_atomic(args.out, lambda f: np.savez(f, **arrays))
    print(f'wrote {args.out}')
    return arrays


if __name__ == '__main__':
    run_cli(main, get_extract_parser())
