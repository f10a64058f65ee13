"""``heads.pth``: a trained classifier, self-contained (docs/checkpoints.md, "Classifiers").

``linear_eval.py`` and ``finetune.py`` write it beside ``results.json``: the kind (``linear`` or
``finetune``), every stream's encoder and head, the encoder's settings and clip length, the
description of the dataset it classifies (its classes and skeleton) and what it was trained
from. It holds tensors and plain containers only, so it loads with ``weights_only=True``, and its
``kind`` tells it apart from a pretraining checkpoint.
"""
import os

import torch

from evaluation.classifier import Classifier, fuse, stream_weights
from evaluation.deploy import CentreCrop, Deployable
from evaluation.features import RawFeatures, raw_modality, raw_stream
from feeder.info import DatasetInfo
from feeder.joints import skeleton_map
from models import EncoderConfig, build_encoder, encoder_of
from models.encoder import StreamEncoder
from utils.checkpoint_io import read_checkpoint
from utils.io import write_atomic
from utils.run import plain

HEAD_KINDS = ('linear', 'finetune')


def heads_record(kind, classifiers, args, dataset, loaded):
    """What ``heads.pth`` holds; ``classifiers``: {stream: :class:`Classifier`}, ``loaded``: the
    record :func:`evaluation.pretrained.load_encoders` returned."""
    return {'kind': kind, 'streams': list(classifiers), 'frames': loaded['frames'],
            'encoder': plain(encoder_of(vars(args))),
            'encoder_kind': loaded['kind'], 'dataset': dataset.to_json(),
            # encoders of another dataset's skeleton (feeder/joints.py): the one they take
            **({'encoder_dataset': loaded['encoder_dataset'].to_json(), 'mapping': loaded['mapping']}
               if loaded.get('mapping') else {}),
            'heads': {s: {k: v.detach().cpu().clone() for k, v in c.state_dict().items()}
                      for s, c in classifiers.items()},
            'trained_from': plain({k: loaded[k] for k in ('kind', 'checkpoint', 'sha256', 'epoch')}),
            'args': plain(vars(args))}


def save_heads(path, record):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, lambda f: torch.save(record, f))


def is_heads(checkpoint):
    return isinstance(checkpoint, dict) and checkpoint.get('kind') in HEAD_KINDS and 'heads' in checkpoint


def read_heads(path):
    """A ``heads.pth``, or one clear error where ``path`` is another kind of file."""
    record = read_checkpoint(path)
    if not is_heads(record):
        what = 'a pretraining checkpoint' if isinstance(record, dict) and 'model' in record else 'not a classifier'
        raise ValueError(f'--checkpoint {path}: {what}; expected the heads.pth that linear_eval.py or finetune.py '
                         'writes')
    return record


def encoder_dataset(record):
    """The dataset whose skeleton a ``heads.pth`` record's encoders take: its own, or where they were
    pretrained on another's and its clips mapped (:class:`feeder.joints.SkeletonMap`), that one."""
    key = 'encoder_dataset' if 'encoder_dataset' in record else 'dataset'
    return DatasetInfo.from_json(record[key], source=f'heads.pth "{key}"')


def stream_encoder(record, stream):
    """One stream's encoder of a ``heads.pth`` record (the bare encoder, before its modality), built
    and loaded, in eval mode."""
    info = encoder_dataset(record)
    if record['encoder_kind'] == 'raw':
        encoder = RawFeatures(len(info.channels), record['frames'], info.layout.num_joints, info.persons)
    else:
        encoder = build_encoder(EncoderConfig.from_dict(record['encoder']), info.layout, info.persons,
                                len(info.channels))
    state = {k[len('encoder.'):]: v for k, v in record['heads'][stream].items() if k.startswith('encoder.')}
    encoder.load_state_dict(state)
    return encoder.eval()


def load_classifiers(record, data=None):
    """{stream: :class:`Classifier`} of a ``heads.pth`` record, in eval mode, and the description of
    the dataset it classifies. ``data``: the dataset whose clips it will read (default: that one);
    where its skeleton is not the encoders', its clips are mapped (:class:`feeder.joints.SkeletonMap`)."""
    info = DatasetInfo.from_json(record['dataset'], source='heads.pth "dataset"')
    encoders_take = encoder_dataset(record)
    adapt = skeleton_map(data or info, encoders_take)
    classifiers = {}
    for stream in record['streams']:
        head = record['heads'][stream]
        kind = (record.get('args') or {}).get('head') or 'linear'
        classes = head['head.weight' if kind == 'linear' else 'head.fc2.weight'].shape[0]
        if raw_modality(stream):  # the classified dataset's own coordinates
            encoder = raw_stream(info, record['frames'], stream, skeleton_map(data or info, info))
        else:
            encoder = StreamEncoder(stream_encoder(record, stream), stream, encoders_take.layout,
                                    encoders_take.coordinates, adapt)
        classifier = Classifier(encoder, classes, batchnorm='norm.running_mean' in head, head=kind)
        classifier.load_state_dict(head)
        classifiers[stream] = classifier.eval()
    return classifiers, info


class Probabilities(torch.nn.Module):
    """Class probabilities of clips (N, C, T, V, M), prepared as the test set is: one stream's
    softmax; for several streams, as they were fused (:func:`evaluation.classifier.fuse`): the mean
    of their softmax, or the softmax of their fused logits."""

    def __init__(self, classifiers, fusion='softmax', weights=None):
        super().__init__()
        self.classifiers = torch.nn.ModuleDict(classifiers)
        self.fusion, self.weights = fusion, stream_weights(weights, list(classifiers))

    @torch.no_grad()
    def forward(self, clips):
        logits = {s: c(clips) for s, c in self.classifiers.items()}
        if len(logits) == 1 or self.fusion == 'softmax':
            return torch.stack([v.softmax(dim=1) for v in logits.values()]).mean(0)
        return fuse(logits, self.fusion, self.weights).softmax(dim=1)


def classifier_model(record, classifiers=None):
    """A ``heads.pth`` record's classifier as one module (:class:`evaluation.deploy.Deployable`):
    clips of any length in, the test-time crop it was tested with, class probabilities out.
    ``classifiers``: some of its streams' (default: all, :func:`load_classifiers`)."""
    classifiers = classifiers or load_classifiers(record)[0]
    args = record.get('args') or {}
    crop = CentreCrop(record['frames'], 1.0 if args.get('whole_clips') else 0.95)
    return Deployable(crop, Probabilities(classifiers, args.get('fusion') or 'softmax', args.get('fusion_weights')))
