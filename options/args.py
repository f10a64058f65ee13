"""The argument parser shared by every entry script, and preset resolution."""
import argparse

import torch

from options.presets import DATASETS


def get_args_parser(add_help=False):
    """Arguments common to pretraining and evaluation; scripts add theirs via ``parents=``."""
    parser = argparse.ArgumentParser('CMD', add_help=add_help)
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default='synthetic', choices=sorted(DATASETS))
    data.add_argument('--protocol', default='xsub', help='benchmark: xsub, xview or xsetup (by dataset)')
    data.add_argument('--data-root', required=True,
                      help='folder written by feeder.prepare: DIR/<protocol>/train_data_joint.npy ...')
    data.add_argument('--output-dir', default=None, help='where checkpoints, logs and results go')
    data.add_argument('--frames', type=int, default=None, help='frames per clip after the temporal crop')
    data.add_argument('--batch-size', type=int, default=None, help='per process')
    data.add_argument('--workers', type=int, default=4, help='data-loader processes')

    model = parser.add_argument_group('model')
    model.add_argument('--encoder', default=None, choices=['gru', 'stgcn'])
    model.add_argument('--hidden-size', type=int, default=None, help='GRU hidden units per chain')
    model.add_argument('--num-layers', type=int, default=None, help='GRU layers')
    model.add_argument('--gru-mode', default='published', choices=['published', 'bidirectional'],
                       help='published: two forward-in-time chains per layer (the released function); '
                            'bidirectional: a true bidirectional GRU')
    model.add_argument('--mlp', default=None, action=argparse.BooleanOptionalAction, help='MLP projection head')
    model.add_argument('--dim', type=int, default=None, help='projection size')

    run = parser.add_argument_group('runtime')
    run.add_argument('--device', default=None, help='cuda or cpu (default: cuda when available)')
    run.add_argument('--seed', type=int, default=None)
    return parser


def fill_defaults(args, recipe):
    """Set every argument left at ``None`` from ``recipe``."""
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def check_protocol(args):
    protocols = DATASETS[args.dataset]['protocols']
    if args.protocol not in protocols:
        raise SystemExit(f'error: --protocol {args.protocol} is not a benchmark of {args.dataset}; '
                         f'choose from {", ".join(protocols)}')


def get_supervised_parser(add_help=False):
    """Arguments of the supervised protocols (linear evaluation, fine-tuning)."""
    parser = argparse.ArgumentParser('CMD supervised', add_help=add_help)
    parser.add_argument('--checkpoint', default=None, help="ours, the authors' released file, or 'random'")
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--lr', type=float, default=None)
    parser.add_argument('--schedule', type=int, nargs='*', default=None, help='epochs where lr drops x0.1')
    parser.add_argument('--cos', action='store_true', help='cosine learning-rate decay instead of steps')
    parser.add_argument('--momentum', type=float, default=None)
    parser.add_argument('--weight-decay', type=float, default=None)
    parser.add_argument('--eval-every', type=int, default=1, help='test every N epochs (and after the last)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def resolve_common(args, recipe, output_required=True):
    """The start of every entry script: check the benchmark, fill defaults from ``recipe``, pick
    the device (CUDA when available)."""
    check_protocol(args)
    if output_required and args.output_dir is None:
        raise SystemExit('error: --output-dir is required')
    fill_defaults(args, recipe)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return args
