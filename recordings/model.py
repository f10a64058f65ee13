"""The classifier a timeline runs: a ``heads.pth`` of ``linear_eval.py`` or ``finetune.py``, or
the ONNX or TorchScript file ``export.py`` made of one, with the description it writes beside it
(``FILE.json``: the dataset and the clip length). Either way prepared clips (N, C, T, V, M) of one
length go in and class probabilities come out, the test-time crop inside."""
import os

import numpy as np
import torch

from evaluation.deploy import description_path
from evaluation.heads import classifier_model, load_classifiers, read_heads
from feeder.info import DatasetInfo
from utils.io import read_json

EXPORTED = ('.onnx', '.pt', '.ts', '.torchscript')


class Classifier:
    """``classifier(clips)`` -> (N, classes) probabilities; ``info`` the dataset it classifies,
    ``frames`` its encoder's clip length."""

    def __init__(self, run, info, frames):
        self.run, self.info, self.frames = run, info, frames

    def __call__(self, clips):
        return self.run(np.ascontiguousarray(clips, dtype=np.float32))


def _torch_runner(module, device):
    module = module.eval().to(device)

    @torch.no_grad()
    def run(clips):
        return module(torch.from_numpy(clips).to(device)).cpu().numpy()
    return run


def load_classifier(path, device):
    """The :class:`Classifier` at ``path``; one clear error for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'--checkpoint {path}: no such file')
    if not path.lower().endswith(EXPORTED):
        record = read_heads(path)
        classifiers, info = load_classifiers(record)
        model = classifier_model(record, classifiers)
        return Classifier(_torch_runner(model, device), info, record['frames'])
    described = description_path(path)
    if not os.path.isfile(described):
        raise FileNotFoundError(f'--checkpoint {path}: no {os.path.basename(described)} beside it (export.py writes '
                                'it: the dataset and clip length the file expects); export it again, or pass the '
                                'heads.pth')
    record = read_json(described)
    if record.get('output') != 'probabilities':
        raise ValueError(f'--checkpoint {path}: exports an encoder\'s features, not a classifier; export the '
                         'heads.pth of linear_eval.py or finetune.py')
    info = DatasetInfo.from_json(record.get('dataset'), source=f'{described}: "dataset"')
    if path.lower().endswith('.onnx'):
        import onnxruntime  # only here: the other kinds of classifier do without it
        session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])

        def run(clips):
            return session.run(None, {'clips': clips})[0]
    else:
        run = _torch_runner(torch.jit.load(path, map_location=device), device)
    return Classifier(run, info, int(record['frames']))
