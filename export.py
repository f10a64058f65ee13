"""A trained encoder as one file that needs no code of ours: ONNX or TorchScript.

    python export.py --checkpoint CKPT [--dataset D --data-root DIR] [--stream joint|motion|bone]
        --format onnx|torchscript --out FILE

The module's input is prepared clips cut to their frames: (N, C, T, V, M) float32, any N and any
T >= 1, the arrays ``feeder.prepare`` writes (a clip's first ``num_frame`` frames); its output is
the kNN features (N, D), unnormalised, as ``extract_features.py`` gives them for those clips
(the test-time crop and resize, the stream's modality and the encoder inside). From a
``heads.pth`` of ``linear_eval.py`` or ``finetune.py`` it outputs class probabilities instead
(several streams: the mean of their softmax; ``--stream`` picks one). ``--dataset`` (and
``--data-root`` for own data) are needed only for the authors' released files, which do not
describe their data. The file is checked against the PyTorch module before the script ends;
``FILE.json`` beside it says what it takes and gives (the dataset's description, the clip length,
features or probabilities), which ``timeline.py`` reads.
"""
import argparse
import os

import numpy as np
import torch

from evaluation.deploy import CentreCrop, Deployable, export_onnx, export_torchscript, write_description
from evaluation.features import StreamFeatures
from evaluation.heads import classifier_model, is_heads, load_classifiers
from evaluation.pretrained import load_encoders, open_pretrained
from feeder.info import DATASET_NAMES, DatasetInfo, dataset_info
from feeder.modalities import MODALITIES
from utils.io import write_path_atomic
from utils.run import run_cli


def get_export_parser():
    parser = argparse.ArgumentParser('CMD export', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help="ours, a heads.pth, or the authors' released file")
    parser.add_argument('--dataset', default=None, choices=DATASET_NAMES,
                        help='the data the checkpoint encodes (default: what the checkpoint records)')
    parser.add_argument('--data-root', default=None, help="a prepared folder whose dataset.json describes it")
    parser.add_argument('--stream', default=None, choices=MODALITIES,
                        help="the stream exported (default: joint; a heads.pth's: all its streams)")
    parser.add_argument('--format', required=True, choices=['onnx', 'torchscript'])
    parser.add_argument('--out', required=True, help='the file to write')
    return parser


def deployable(args):
    """The module to export, its dataset and clip length, and its output's name."""
    kind, checkpoint, _ = pretrained = open_pretrained(args.checkpoint)
    if kind in ('random', 'raw'):
        raise ValueError(f'--checkpoint {args.checkpoint}: nothing trained to export')
    if is_heads(checkpoint):
        classifiers, info = load_classifiers(checkpoint)
        if args.stream:
            if args.stream not in classifiers:
                raise ValueError(f'--checkpoint {args.checkpoint} has no {args.stream} head (its streams: '
                                 f'{", ".join(classifiers)})')
            classifiers = {args.stream: classifiers[args.stream]}
        return classifier_model(checkpoint, classifiers), info, 'probabilities'
    if args.dataset:
        info = dataset_info(args.dataset, args.data_root)
    elif kind == 'ours' and isinstance(checkpoint.get('dataset'), dict):
        info = DatasetInfo.from_json(checkpoint['dataset'], source=f'--checkpoint {args.checkpoint}: "dataset"')
    else:
        raise ValueError(f'--checkpoint {args.checkpoint} does not describe its data: pass --dataset (and --data-root)')
    stream = args.stream or 'joint'
    encoders, loaded, _ = load_encoders(args.checkpoint, [stream], info, pretrained=pretrained)
    body = StreamFeatures(encoders[stream])
    return Deployable(CentreCrop(loaded['frames']), body), info, 'features'


def check(path, fmt, model, example):
    """The written file's output on ``example`` and its largest difference from ``model``'s."""
    with torch.no_grad():
        expected = model(example).numpy()
        if fmt == 'torchscript':
            got = torch.jit.load(path)(example).numpy()
        else:
            import onnxruntime
            session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
            got = session.run(None, {'clips': example.numpy()})[0]
    return got, float(np.abs(got - expected).max())


def main(args):
    if os.path.isdir(args.out):
        raise SystemExit(f'error: --out {args.out} is a folder; expected a file to write')
    model, info, output = deployable(args)
    model = model.eval()
    frames, (c, v, m) = model.crop.frames, (len(info.channels), info.layout.num_joints, info.persons)
    example = torch.randn(2, c, 2 * frames, v, m)
    if args.format == 'onnx':
        write_path_atomic(args.out, lambda tmp: export_onnx(model, example, tmp, output))
    else:
        write_path_atomic(args.out, lambda tmp: export_torchscript(model, example, tmp))
    got, error = check(args.out, args.format, model, torch.randn(3, c, frames + 5, v, m))
    print(f'wrote {args.out}: clips (N, {c}, T, {v}, {m}) float32 -> {output} (N, {got.shape[1]}); against '
          f'PyTorch at N 3, T {frames + 5}: largest difference {error:.2e}')
    if error > 1e-4:
        os.remove(args.out)
        raise SystemExit(f'error: the exported file differed from the PyTorch module by {error:.2e}; removed it')
    write_description(args.out, output, frames, info, args.checkpoint)
    return error

if __name__ == '__main__':
    run_cli(main, get_export_parser())
