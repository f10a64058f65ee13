"""The parent parsers every entry script builds on, and the resolution of their defaults."""
import argparse
import os

import torch

from feeder.info import BUILTIN_DATASETS, DATASET_NAMES
from feeder.modalities import MODALITIES
from feeder.offline import STEPS
from models import ENCODERS, METHODS, own_settings


def positive_int(text):
    return _bounded_int(text, 1, 'a whole number of at least 1')


def non_negative_int(text):
    return _bounded_int(text, 0, 'a whole number of at least 0')


def _bounded_int(text, low, expected):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not {expected}') from None
    if value < low:
        raise argparse.ArgumentTypeError(f'{value} is not {expected}')
    return value


def default_workers():
    """Data-loader processes: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)


def get_args_parser(add_help=False, encoder_flags=True):
    """Arguments common to pretraining and evaluation; scripts add theirs via ``parents=``. With
    ``encoder_flags``, every encoder's settings, made from ``models.ENCODERS`` (a script that
    builds no encoder of its own choosing leaves them out)."""
    parser = argparse.ArgumentParser('common', add_help=add_help)
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default='synthetic', choices=DATASET_NAMES,
                      help="a built-in dataset, or custom: what DATA_ROOT/dataset.json describes")
    data.add_argument('--protocol', default='xsub', help='benchmark: xsub, xview, xsetup (by dataset), or a custom '
                                                          "dataset's (all where it has no splits)")
    data.add_argument('--data-root', required=True,
                      help='folder written by feeder.prepare: DIR/<benchmark>/train_data_joint.npy ...')
    data.add_argument('--output-dir', default=None, help='where checkpoints, logs and results go')
    data.add_argument('--frames', type=positive_int, default=None, help='frames per clip after the temporal crop')
    data.add_argument('--offline-step', default=None, choices=STEPS,
                      help="what every clip goes through before anything else: stgcn50, the ST-GCN methods' published "
                           'step (valid frames, centred, resized to 50 frames, turned so that the shoulders lie along '
                           'x; docs/protocols.md); an evaluation takes its checkpoint\'s'),
    data.add_argument('--batch-size', type=positive_int, default=None, help='per process')
    data.add_argument('--workers', type=non_negative_int, default=default_workers(),
                      help='data-loader processes (default: the cores available, at most 4)')

    model = parser.add_argument_group('model')
    model.add_argument('--encoder', default=None, choices=list(ENCODERS), help='the encoder (models.ENCODERS)')
    if encoder_flags:
        add_settings(model, own_settings().values())
        model.add_argument('--mlp', default=None, action=argparse.BooleanOptionalAction, help='MLP projection head')
        model.add_argument('--dim', type=positive_int, default=None, help='projection size')

    run = parser.add_argument_group('runtime')
    run.add_argument('--device', default=None, choices=['cuda', 'cpu'],
                     help='cuda or cpu (default: cuda when available; under torchrun each process takes the GPU '
                          'of its LOCAL_RANK)')
    run.add_argument('--seed', type=int, default=None)
    return parser


def add_settings(group, settings):
    """The flags of ``settings`` (:class:`models.encoder.Setting`), each defaulting to ``None``: the
    recipe fills what the command line leaves open."""
    for setting in settings:
        if setting.type is bool:
            group.add_argument(setting.flag, default=None, action=argparse.BooleanOptionalAction, help=setting.help)
            continue
        kind = (positive_int if setting.low >= 1 else non_negative_int) if setting.type is int else setting.type
        group.add_argument(setting.flag, type=kind, default=None, choices=setting.choices, help=setting.help)


def get_optim_parser(add_help=False):
    """The optimiser and its schedule (utils/schedule.py), for pretraining and the supervised
    protocols alike."""
    parser = argparse.ArgumentParser('optimisation', add_help=add_help)
    opt = parser.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=positive_int, default=None)
    opt.add_argument('--optimizer', default=None, choices=['sgd', 'adamw'],
                     help='sgd: weight decay on every parameter; adamw: --betas, no decay on 1-D parameters')
    opt.add_argument('--lr', type=float, default=None, help='base learning rate')
    opt.add_argument('--schedule', type=int, nargs='*', default=None, help='epochs where lr drops x0.1')
    opt.add_argument('--cos', default=None, action=argparse.BooleanOptionalAction,
                     help='cosine learning-rate decay (to --min-lr) instead of steps')
    opt.add_argument('--min-lr', type=float, default=None, help='where --cos ends')
    opt.add_argument('--warmup-epochs', type=non_negative_int, default=None,
                     help='a linear warm-up from 0 over the first N epochs; the lr is then set at every step')
    opt.add_argument('--momentum', type=float, default=None, help='SGD momentum')
    opt.add_argument('--betas', type=float, nargs=2, default=None, metavar=('B1', 'B2'), help="AdamW's betas")
    opt.add_argument('--weight-decay', type=float, default=None)
    return parser


def get_augment_parser(add_help=False):
    """The pretraining views' augmentations (docs/method.md); their defaults are the published ones."""
    parser = argparse.ArgumentParser('augmentation', add_help=add_help)
    aug = parser.add_argument_group('augmentation (docs/method.md)')
    aug.add_argument('--min-crop', type=positive_int, default=None, help='shortest temporal crop (none: --frames)')
    aug.add_argument('--shear', type=float, default=None, help="the shear's amplitude: off-diagonal entries U(-A, A)")
    aug.add_argument('--corruption', type=float, default=None,
                     help='probability of joint corruption instead of shear, per view')
    aug.add_argument('--rotation', type=float, default=None,
                     help='a random turn of U(-D, D) degrees about the vertical axis (3D) or in the image plane (2D)')
    return parser


def get_eval_parser(fusion=True, add_help=False):
    """What every evaluation reads: the checkpoint and the streams (``fusion`` True: ``all`` and
    ``all+raw`` allowed, the default resolved later; ``'all'``: ``all`` allowed, joint by default)."""
    parser = argparse.ArgumentParser('evaluation', add_help=add_help)
    parser.add_argument('--checkpoint', default=None,
                        help="ours, the authors' released file, 'random' (an untrained encoder) or 'raw' (no encoder: "
                             "the prepared coordinates themselves, flattened)")
    parser.add_argument('--method', default=None, choices=list(METHODS),
                        help="with --checkpoint random or raw: the method whose encoder (its recipe's, at its size) "
                             'and evaluation protocol a baseline takes, to stand beside that method\'s checkpoint; a '
                             'checkpoint records its own')
    if fusion is True:
        choices, default, fused = ['all', 'all+raw'], None, (
            ", or 'all': every stream the checkpoint has (results.json lists them) and, for several, their fusion; "
            "'all+raw': those and the prepared coordinates in each modality (streams raw_joint, raw_motion, "
            'raw_bone), fused (default on a small dataset, as the small-data preset decides: all+raw for kNN, all '
            'for a linear head; else joint; extract_features.py and retrieve.py: all)')
    else:
        choices, default, fused = ['all'], 'joint', (
            ", or 'all': every stream the checkpoint has, each with its own head, their softmax scores summed")
    parser.add_argument('--stream', default=default, choices=list(MODALITIES) + choices,
                        help=f'the modality evaluated{fused}')
    return parser


def add_report_arguments(parser):
    """``--plot-confusion``: the per-class report's picture (results.json holds the numbers)."""
    parser.add_argument('--plot-confusion', default=None, metavar='PNG',
                        help='draw the confusion matrix (of the fusion where there is one), rows as shares of '
                             "each class's clips, with the class names")


def get_supervised_parser(add_help=False):
    """Arguments of the supervised protocols (linear evaluation, fine-tuning); their defaults are the
    protocol's, or where the checkpoint's method was published with another, that method's
    (docs/protocols.md, "Evaluation protocols")."""
    parser = argparse.ArgumentParser('supervised', add_help=add_help, parents=[get_optim_parser()])
    parser.add_argument('--eval-every', type=positive_int, default=1, help='test every N epochs (and after the last)')
    parser.add_argument('--whole-clips', default=None, action=argparse.BooleanOptionalAction,
                        help='train and test on whole clips resized to --frames, no crop (the ST-GCN methods\' '
                             'protocol), instead of random 0.5-1 crops to train and the centre 95%% to test')
    parser.add_argument('--rotate-train', type=float, default=None, metavar='RADIANS',
                        help='turn each training clip by U(-R, R) radians about x, y and z (docs/protocols.md)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def show_defaults(parser, recipe_for, note=None):
    """Append to each recipe-filled flag's help what it defaults to, per dataset:
    ``recipe_for(dataset)`` is that dataset's recipe; ``note(key)`` may add a remark (for example
    an encoder's own value)."""
    for action in parser._actions:
        values = {name: recipe_for(name).get(action.dest) for name in sorted(BUILTIN_DATASETS)}
        if action.default is not None or all(v is None for v in values.values()):
            continue
        groups = {}
        for name, value in values.items():
            groups.setdefault(format_default(value), []).append(name)
        common = max(groups, key=lambda v: len(groups[v]))
        others = '; '.join(f'{", ".join(names)}: {v}' for v, names in groups.items() if v != common)
        extra = note(action.dest) if note else None
        details = '; '.join(x for x in (others, extra) if x)
        default = f'default: {common}' + (f' ({details})' if details else '')
        action.help = f'{action.help}; {default}' if action.help else default


def format_default(value):
    if value is None:
        return 'none'
    return ' '.join(map(str, value)) if isinstance(value, list) else str(value)


def fill_defaults(args, recipe):
    """Set every argument left at ``None`` from ``recipe``."""
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def check_benchmark(args, dataset):
    if args.protocol not in dataset.benchmarks:
        raise SystemExit(f'error: --protocol {args.protocol} is not a benchmark of {dataset.name}; '
                         f'choose from {", ".join(dataset.benchmarks)}')


def check_places(args, dataset, output_required=True):
    """The benchmark of ``dataset`` (a :class:`feeder.info.DatasetInfo`) and the output folder."""
    check_benchmark(args, dataset)
    if output_required and args.output_dir is None:
        raise SystemExit('error: --output-dir is required')
    if args.output_dir is not None and os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise SystemExit(f'error: --output-dir {args.output_dir} is a file, not a folder')


def resolve_common(args, dataset, recipe, output_required=True):
    """The start of a small entry script (``visualize.py``): check the benchmark of ``dataset``
    and the output folder, fill defaults from ``recipe``, pick the device (CUDA when available)."""
    check_places(args, dataset, output_required)
    fill_defaults(args, recipe)
    resolve_device(args)
    return args


def settle_device(requested):
    """The device of ``--device requested``: CUDA when available unless given. First of all in an
    entry script that runs under ``torchrun``: the process group and each process's GPU depend on
    it."""
    if requested is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if requested == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda, but PyTorch sees no CUDA device here (a CPU-only build, or no '
                         'driver); leave --device out to run on the CPU')
    return requested


def resolve_device(args):
    """Settle ``args.device`` (:func:`settle_device`)."""
    args.device = settle_device(args.device)
    return args.device
