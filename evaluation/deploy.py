"""A trained encoder as one deployable module (``export.py``): prepared clips in, the kNN features
(or, from a ``heads.pth``, class probabilities) out, with the test-time crop inside."""
import json
import os
import warnings

import torch

from feeder.augment import center_crop_resize
from utils.io import write_text_atomic


class CentreCrop(torch.nn.Module):
    """Clips (N, C, T, V, M) of one length T, any T >= 1: the test-time crop, the centre ``keep``
    (95%; the whole clip under ``--whole-clips``) resized to ``frames``
    (:func:`feeder.augment.center_crop_resize`)."""

    def __init__(self, frames, keep: float = 0.95):
        super().__init__()
        self.frames, self.keep = frames, keep

    def forward(self, clips):
        lengths = torch.full((clips.shape[0],), clips.shape[2], dtype=torch.long, device=clips.device)
        return center_crop_resize(clips, lengths, self.frames, self.keep)


class Deployable(torch.nn.Module):
    """``body`` (a stream's features, or class probabilities) after the test-time crop."""

    def __init__(self, crop, body):
        super().__init__()
        self.crop, self.body = crop, body

    def forward(self, clips):
        return self.body(self.crop(clips))


def export_onnx(model, example, path, output_name):
    """ONNX through ``torch.export`` (``dynamo=True``), the batch and time axes left free."""
    shapes = {'clips': {0: torch.export.Dim('batch'), 2: torch.export.Dim('time', min=1)}}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's notes on optional packages
        program = torch.onnx.export(model, (example,), None, dynamo=True, input_names=['clips'],
                                    output_names=[output_name], dynamic_shapes=shapes, verbose=False)
    program.save(path)


def export_torchscript(model, example, path):
    """TorchScript: the crop compiled (its time axis stays free), the body traced at the
    encoder's fixed clip length (where tracing loses nothing); the batch axis stays free."""
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on values it keeps constant: the batch-free body holds none that vary,
        # and export.py checks the file at another batch size and length
        warnings.simplefilter('ignore')
        model(example)  # fills the per-device caches first, so that the trace and its check agree
        body = torch.jit.trace(model.body, model.crop(example))
        torch.jit.script(Deployable(torch.jit.script(model.crop), body)).save(path)


def description_path(path):
    """Where ``export.py`` describes the file it wrote (``timeline.py`` reads it)."""
    return path + '.json'


def write_description(path, output, frames, info, checkpoint):
    """What goes into the exported file at ``path`` and what comes out: clips of ``info``'s
    dataset, cropped to ``frames``; ``output`` features or probabilities."""
    record = {'file': os.path.basename(path), 'output': output, 'frames': frames, 'checkpoint': checkpoint,
              'dataset': info.to_json()}
    write_text_atomic(description_path(path), json.dumps(record, indent=1))
