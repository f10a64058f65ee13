"""Pretrained encoders for evaluation: our checkpoints, the authors' released files, random
encoders, or ``raw`` (no encoder: the prepared coordinates themselves).

Every file is read with ``torch.load(..., weights_only=True)``, so a downloaded checkpoint cannot
run code; one that needs more than tensors and plain containers is refused.
"""
import argparse
import hashlib
import re

import torch

from evaluation.features import RawFeatures, StreamFeatures, raw_modality, raw_stream
from evaluation.heads import encoder_dataset, is_heads, stream_encoder
from feeder.info import BUILTIN_DATASETS, DatasetInfo, dataset_info
from feeder.joints import SkeletonMap
from feeder.modalities import MODALITIES
from models import DEFAULT_METHOD, METHODS, EncoderConfig, build_encoder, build_method, encoder_setting_names
from models.encoder import StreamEncoder
from models.checkpoint import RELEASED_SUFFIX, released_encoder_state, strip_module
from options.presets import PRETRAIN, UNRECORDED_DEFAULTS, default_choice, recipe
from utils.checkpoint_io import read_checkpoint


def file_hash(path, chars=16):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()[:chars]


NO_CHECKPOINT = ('random', 'raw')
# The GRU of the published code and the released files.
PUBLISHED_GRU = {k: v for k, v in UNRECORDED_DEFAULTS.items() if k in ('gru_mode', 'gru_pool')}


def _released_gru_args(state):
    """Encoder settings of a released GRU checkpoint, read off its tensor shapes."""
    sub = released_encoder_state(state, 'q', 'joint')
    layers = len({m.group(1) for k in sub if (m := re.fullmatch(r'encoder\.gru\.weight_hh_l(\d+)', k))})
    hidden = sub['encoder.gru.weight_hh_l0'].shape[1]
    mlp = 'fc.2.weight' in sub
    dim = sub['fc.2.weight' if mlp else 'fc.weight'].shape[0]
    return dict(encoder='gru', hidden_size=hidden, num_layers=layers, mlp=mlp, dim=dim, **PUBLISHED_GRU)


def describe(checkpoint):
    """What kind of file this is: ('ours', args), ('released', args), ('heads', the encoder's
    settings) for a ``heads.pth`` (its encoders: fine-tuned ones, or those it was trained on), or
    an error listing its keys."""
    if isinstance(checkpoint, dict) and 'model' in checkpoint and 'args' in checkpoint:
        return 'ours', checkpoint['args']
    if is_heads(checkpoint):
        return 'heads', dict(checkpoint['encoder'], frames=checkpoint['frames'], modalities=checkpoint['streams'],
                             offline_step=(checkpoint.get('args') or {}).get('offline_step'))
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        state = strip_module(checkpoint['state_dict'])
        if any(k.startswith('encoder_q.') for k in state):
            return 'released', _released_gru_args(state)
    keys = sorted(checkpoint)[:20] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ValueError(f'not a pretraining checkpoint: expected ours ({{"model", "args", ...}}) or the released layout '
                     f'({{"state_dict": {{"encoder_q.encoder.gru...", ...}}}}); found {keys}')


def feature_extractors(checkpoint, dataset, streams=MODALITIES, data_root=None):
    """The features of a checkpoint from Python: {stream: module mapping clips (N, C, T, V, M) to
    (N, D) features before ``fc``} and the clip length they were pretrained with.

    ``checkpoint``: ours, the authors' released file, ``'random'`` or ``'raw'``; ``dataset``: a built-in
    name, ``'custom'`` (read from ``data_root/dataset.json``) or a
    :class:`feeder.info.DatasetInfo`. Clips are prepared as ``knn_eval.py`` prepares them:
    ``feeder.augment.center_crop_resize(clips, lengths, frames)``.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset, data_root)
    encoders, record, _ = load_encoders(checkpoint, list(streams), info)
    return {s: StreamFeatures(e) for s, e in encoders.items()}, record['frames']


def _trained_on(path, kind, checkpoint, ckpt_args, info):
    """The description of the data a checkpoint's encoders take: recorded in our checkpoints (a
    classifier's: :func:`evaluation.heads.encoder_dataset`), looked up by name in older ones, assumed
    to be ``info``'s for released files and random encoders."""
    if kind == 'heads':
        return encoder_dataset(checkpoint)
    if kind == 'ours' and isinstance(checkpoint.get('dataset'), dict):
        return DatasetInfo.from_json(checkpoint['dataset'], source=f'--checkpoint {path}: "dataset"')
    return BUILTIN_DATASETS.get(ckpt_args.get('dataset'), info)


def _skeleton(info):
    return f'layout {info.layout.name} of {info.layout.num_joints} joints x {info.persons} persons x {info.channels}'


def open_pretrained(path):
    """``(kind, checkpoint, pretraining args)`` of ``path``: ``'ours'``, ``'released'`` (args read
    off the tensor shapes), ``'random'`` for ``None``/``'random'`` or ``'raw'`` (both: no
    checkpoint, no args)."""
    if path in (None, 'random', 'raw'):
        return path or 'random', None, {}
    checkpoint = read_checkpoint(path)
    kind, args = describe(checkpoint)
    return kind, checkpoint, args


def streams_held(pretrained):
    """The streams ``pretrained`` (from :func:`open_pretrained`) can encode, in the modalities'
    order: a pretraining run's ``modalities`` (a checkpoint that predates the setting: the three),
    a heads file's streams; the three for the released files, a random encoder and raw coordinates."""
    kind, checkpoint, ckpt_args = pretrained
    held = MODALITIES
    if kind == 'ours':
        held = ckpt_args.get('modalities') or MODALITIES
    elif kind == 'heads':
        held = checkpoint['streams']
    return [m for m in MODALITIES if m in held]


def encoder_settings(pretrained, dataset, random_args=None, benchmark=None):
    """The pretraining settings the encoders are built with: the recipe of ``dataset`` (a
    :class:`feeder.info.DatasetInfo`) for ``benchmark``, overridden by what the checkpoint records
    (:func:`options.presets.recipe` with ``recorded``), or for a random encoder the recipe of
    ``random_args``' method (by default what a run on the dataset pretrains) overridden by the
    non-``None`` architecture entries of ``random_args``."""
    kind, checkpoint, ckpt_args = pretrained
    if kind not in NO_CHECKPOINT:
        trained_on = _trained_on(None, kind, checkpoint, ckpt_args, dataset)
        if trained_on.skeleton != dataset.skeleton:  # its own data's recipe: the encoder was built for it
            dataset, benchmark = trained_on, ckpt_args.get('protocol')
        return recipe(dataset, ckpt_args.get('encoder') or PRETRAIN['encoder'], ckpt_args.get('method'),
                      benchmark, recorded=ckpt_args)[0]
    names = encoder_setting_names()
    chosen = {k: v for k, v in (random_args or {}).items() if k in names and v is not None}
    method, encoder, _ = default_choice(dataset, benchmark)  # the encoder a run on this dataset trains by default
    if (random_args or {}).get('method'):
        method = random_args['method']
        encoder = recipe(dataset, chosen.get('encoder'), method, benchmark=benchmark)[0]['encoder']
    elif chosen.get('encoder', encoder) != encoder:
        method = DEFAULT_METHOD
    return dict(recipe(dataset, chosen.get('encoder') or encoder, method, benchmark=benchmark)[0], **chosen)


def _pretrained_method(path, checkpoint, args, settings, info):
    """The pretraining model of one of our checkpoints, rebuilt from the settings it records
    (``settings``, its ``args`` over the recipe) and loaded whole: evaluation reads the trained
    encoders through the method's ``encoders()`` (docs/method.md, "Methods")."""
    method = args.get('method') or DEFAULT_METHOD  # checkpoints that predate methods are its
    if method not in METHODS:
        raise ValueError(f'--checkpoint {path} was pretrained with --method {method}, which this code does not know '
                         f'(known: {", ".join(METHODS)})')
    torch.manual_seed(PRETRAIN['seed'])
    model = build_method(argparse.Namespace(**dict(settings, method=method)), info)
    try:
        model.load_state_dict(strip_module(checkpoint['model']))
    except RuntimeError as e:
        raise ValueError(f'--checkpoint {path} does not fit the {method} model its args describe: '
                         f'{str(e)[:500]}') from None
    return model.eval()


def load_encoders(path, streams, dataset, frames=None, random_args=None, pretrained=None, benchmark=None):
    """Query encoders for ``streams`` ({stream: :class:`models.encoder.StreamEncoder`}) in eval
    mode, and a record of what was loaded.

    ``path`` may be ``None``/``'random'`` for a randomly initialised encoder with the dataset's
    default settings, changed by the non-``None`` entries of ``random_args`` (a checkpoint fixes
    its own architecture), or ``'raw'`` for :class:`evaluation.features.RawFeatures` at the
    recipe's frames. ``pretrained``: what :func:`open_pretrained` returned for ``path``, if
    it was read already. ``dataset``: a :class:`feeder.info.DatasetInfo` or a built-in dataset's
    name. Where the checkpoint's skeleton (layout, persons, channels) is not the dataset's, the clips
    are made clips of its skeleton first (:class:`feeder.joints.SkeletonMap`, printed and recorded as
    ``mapping``), or the one-line error where they cannot be.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset)
    pretrained = pretrained or open_pretrained(path)
    settings = encoder_settings(pretrained, info, random_args, benchmark)
    kind, checkpoint, ckpt_args = pretrained
    trained_on = _trained_on(path, kind, checkpoint, ckpt_args, info)
    adapt = None
    if trained_on.skeleton != info.skeleton:
        try:
            adapt = SkeletonMap(info, trained_on)
        except ValueError as e:
            raise ValueError(f'--checkpoint {path} was pretrained on {trained_on.name} ({_skeleton(trained_on)}) and '
                             f'cannot encode {info.name} ({_skeleton(info)}): {e}') from None
        print(f'--checkpoint {path}: {adapt.summary()}')
    config = EncoderConfig.from_dict(settings)
    frames = frames or settings['frames']
    encoders, report = {}, {}
    built = trained_on if adapt is not None else info  # the skeleton the encoders take
    trained = _pretrained_method(path, checkpoint, ckpt_args, settings, built).encoders() if kind == 'ours' else None
    for stream in streams:
        torch.manual_seed(PRETRAIN['seed'])
        if raw_modality(stream):  # the data's own coordinates, beside the encoders
            encoders[stream], report[stream] = raw_stream(info, frames, stream), {'loaded': [], 'missing': []}
            continue
        if kind == 'ours':
            if stream not in trained:
                raise ValueError(f'--checkpoint {path} has no {stream} encoder (pretrained modalities: '
                                 f'{list(trained)})')
            encoder = trained[stream].encoder
            state, missing, unexpected = encoder.state_dict(), [], []
        elif kind == 'raw':
            encoder = RawFeatures(len(info.channels), frames, info.layout.num_joints, info.persons)
        elif kind == 'heads':
            if stream not in checkpoint['streams']:
                raise ValueError(f'--checkpoint {path} has no {stream} stream (its streams: {checkpoint["streams"]})')
            encoder, state = stream_encoder(checkpoint, stream), checkpoint['heads'][stream]
        else:
            encoder = build_encoder(config, info.layout, info.persons, len(info.channels))
        if kind == 'released':
            state = released_encoder_state(strip_module(checkpoint['state_dict']), 'q', stream)
            if not state:
                raise ValueError(f'--checkpoint {path} has no encoder_q{RELEASED_SUFFIX[stream]}.* entries')
            missing, unexpected = encoder.load_released_state_dict(state)
        elif kind != 'ours':  # random, raw, or heads (loaded whole above)
            missing, unexpected = [], []
        missing = [k for k in missing if not k.startswith('fc.')]
        if missing or unexpected:
            raise ValueError(f'--checkpoint {path}, {stream} encoder: missing {missing}, unexpected {unexpected}')
        encoders[stream] = StreamEncoder(encoder.eval(), stream, built.layout, built.coordinates, adapt)
        report[stream] = {'loaded': [] if kind in NO_CHECKPOINT else sorted(state), 'missing': missing}
    info = {'kind': kind, 'checkpoint': None if kind in NO_CHECKPOINT else str(path),
            'sha256': None if kind in NO_CHECKPOINT else file_hash(path), 'pretrain_args': ckpt_args,
            'frames': frames, 'encoder_dataset': built, 'mapping': None if adapt is None else adapt.record,
            'epoch': checkpoint.get('epoch') if isinstance(checkpoint, dict) else None}
    return encoders, info, report
