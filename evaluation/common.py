"""The set-up the evaluation scripts share: benchmark, defaults, device, streams, encoders and
data loaders."""
import os
import sys
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from feeder.datasets import DownstreamDataset, SkeletonFolder
from feeder.info import DatasetInfo, dataset_info
from feeder.modalities import MODALITIES
from feeder.offline import check_step, offline_transform
from evaluation.features import RAW_STREAMS
from evaluation.pretrained import NO_CHECKPOINT, encoder_settings, load_encoders, open_pretrained, streams_held
from models import DEFAULT_METHOD, METHODS, encoder_of, encoder_setting_names
from options.args import check_places, settle_device
from options.presets import default_stream, few_labels_batch
from options.settings import Resolution
from utils.dist import launch_env
from utils.run import announce


@dataclass
class Evaluation:
    """One evaluation run's fixed parts; ``args`` are the parsed, resolved arguments and
    ``pretrained`` what :func:`evaluation.pretrained.open_pretrained` read."""
    args: object
    dataset: DatasetInfo
    device: torch.device
    streams: list
    pretrained: tuple

    @property
    def root(self):
        return os.path.join(self.args.data_root, self.args.protocol)

    def folder(self, part, labelled=True):
        """One part of the benchmark, checked against the dataset (joints, persons, channels and,
        with ``labelled``, the labels: evaluating unlabelled clips is an error), each clip after
        the run's offline step."""
        folder = SkeletonFolder(self.root, part, offline_transform(self.args.offline_step, self.dataset.layout))
        folder.check(self.dataset, labelled=labelled)
        return folder

    def load_encoders(self, streams=None):
        """The pretrained (or random) encoders of ``streams`` (default: the run's), in eval mode;
        see :func:`evaluation.pretrained.load_encoders`."""
        return load_encoders(self.args.checkpoint, streams or self.streams, self.dataset, self.args.frames,
                             vars(self.args), self.pretrained, self.args.protocol)

    def clips(self, part, frames, train=False, labelled=True, whole=None):
        """One part's clips as the protocol prepares them (``--whole-clips``, or ``whole``;
        ``--rotate-train``)."""
        args = self.args
        whole = bool(getattr(args, 'whole_clips', False)) if whole is None else whole
        return DownstreamDataset(self.folder(part, labelled), frames=frames, train=train, whole=whole,
                                 rotation=getattr(args, 'rotate_train', 0.0) or 0.0,
                                 coordinates=self.dataset.coordinates)

    def supervised_loaders(self, frames, train_indices=None, few_labels=False):
        """Random 0.5-1.0 crops for training, the 95% centre crop for testing (docs/protocols.md),
        and the settings they follow: with ``few_labels`` (fine-tuning) the recipe's batch follows
        the few-labels rule (:func:`options.presets.few_labels_batch`); a training set smaller than
        ``--batch-size`` trains on one batch of all its clips. The returned settings record either
        (and a line says)."""
        args = self.args
        train = self.clips('train', frames, train=True)
        test = self.clips('val', frames)
        if train_indices is not None:
            train = torch.utils.data.Subset(train, train_indices)
        if few_labels and args.sources.get('batch_size') == 'evaluation recipe':
            batch, why = few_labels_batch(len(train), args.batch_size)
            if batch != args.batch_size:
                print(f'batch_size {batch} ({why})')
                args = args.replace(why, batch_size=batch)
        if len(train) < args.batch_size:
            why = f'one batch of all {len(train)} training clips, fewer than --batch-size {args.batch_size}'
            print(f'{why[0].upper()}{why[1:]}')
            args = args.replace(why, batch_size=len(train))
        pin = self.device.type == 'cuda'
        return (DataLoader(train, args.batch_size, shuffle=True, num_workers=args.workers, pin_memory=pin,
                           drop_last=True),
                # testing keeps the settings' batch: in eval mode the batch changes no result
                DataLoader(test, self.args.batch_size, shuffle=False, num_workers=args.workers, pin_memory=pin), args)


def streams_of(stream, held=MODALITIES):
    """``--stream``: one modality, ``all`` for every one of ``held`` (the streams the checkpoint
    has), ``all+raw`` for those and the raw coordinates in every modality
    (:data:`evaluation.features.RAW_STREAMS`)."""
    if stream in ('all', 'all+raw'):
        return [m for m in MODALITIES if m in held] + (list(RAW_STREAMS) if stream == 'all+raw' else [])
    return [stream]


def pretrained_method(pretrained, requested=None):
    """The method a checkpoint (what :func:`evaluation.pretrained.open_pretrained` read) was
    pretrained with, where it records one (ours; the authors' released files are the default
    method's); for random and raw features the ``requested`` one (``--method``), if any; ``None``
    for classifiers."""
    kind, _, ckpt_args = pretrained
    if kind in NO_CHECKPOINT:
        return requested
    if kind == 'ours':
        return ckpt_args.get('method') or DEFAULT_METHOD  # checkpoints that predate methods are its
    return DEFAULT_METHOD if kind == 'released' else None


def protocol_of(method, protocol):
    """The settings in which ``method``'s published ``protocol`` (``linear``, ``finetune``) differs
    from the default one, and where they come from."""
    cls = METHODS.get(method)
    rows = getattr(cls, 'PROTOCOLS', {}).get(protocol, {}) if protocol else {}
    return rows, f'{method} protocol (published, {getattr(cls, "PUBLISHED", None)})'


def setup_evaluation(args, recipe, output_required=True, protocol=None):
    """The start of every evaluation script: check the benchmark and the output folder, and resolve
    the settings once: the command line, then where the checkpoint's method was published with
    another ``protocol`` (``linear``, ``finetune``) that method's, then the protocol's ``recipe``,
    the device, and the encoder's settings and frames (a checkpoint's own, else the pretraining
    recipe's); ``protocol`` ``features`` takes every stream fused by default. Prints the revision
    and the settings; the returned :class:`Evaluation`'s ``args`` are those settings, frozen
    (:class:`options.settings.Settings`), what the script reads from then on."""
    processes = launch_env()[1]
    if processes > 1:
        raise SystemExit(f'error: {os.path.basename(sys.argv[0])} runs as one process, but was started as one of '
                         f'{processes} (WORLD_SIZE); run it with python, not torchrun')
    dataset = dataset_info(args.dataset, args.data_root)
    check_places(args, dataset, output_required)
    resolution = Resolution(args)
    values = resolution.values
    pretrained = open_pretrained(args.checkpoint)
    stream, why = default_stream(dataset, args.protocol, pretrained[0] in ('ours', 'released', 'random'), protocol)
    resolution.layer({'stream': stream}, why)
    if getattr(args, 'method', None) and pretrained[0] not in NO_CHECKPOINT:
        raise SystemExit(f'error: --method {args.method} is for --checkpoint random or raw; --checkpoint '
                         f'{args.checkpoint} records its own')
    rows, published = protocol_of(pretrained_method(pretrained, getattr(args, 'method', None)), protocol)
    resolution.layer(rows, published)
    resolution.layer(recipe, 'evaluation recipe')
    device = settle_device(args.device)
    resolution.set('device', device, 'command line' if args.device else 'CUDA available' if device == 'cuda' else
                   'no CUDA device')
    # a checkpoint decides the architecture; the settings say what is used, so they print it
    fixed = 'checkpoint' if pretrained[0] not in NO_CHECKPOINT else 'pretraining recipe'
    settings = encoder_settings(pretrained, dataset, values, args.protocol)
    names = encoder_setting_names()
    ignored = [f'--{k.replace("_", "-")} {values[k]}' for k in names
               if values.get(k) is not None and values[k] != settings.get(k)]
    if ignored:
        print(f'the checkpoint fixes the encoder; ignored: {", ".join(ignored)}')
    used = encoder_of(settings)  # only the encoder's own settings: those of another encoder say nothing
    resolution.drop(set(names) - set(used))
    for key, value in used.items():
        resolution.set(key, value, 'command line' if fixed != 'checkpoint' and getattr(args, key, None) is not None
                       else fixed)
    # the clips are prepared as the encoder was trained on them
    resolution.layer({key: settings[key] for key in ('frames', 'offline_step')}, fixed)
    check_step(values['offline_step'], dataset)
    args = resolution.settings()
    announce(args)
    streams = streams_of(args.stream, streams_held(pretrained))
    if args.stream == 'all' and len(streams) < len(MODALITIES):
        print(f'--stream all: --checkpoint {args.checkpoint} has the {", ".join(streams)} stream'
              f'{"s" if len(streams) > 1 else ""} only' + (', fused' if len(streams) > 1 else ''))
    return Evaluation(args, dataset, torch.device(args.device), streams, pretrained)
