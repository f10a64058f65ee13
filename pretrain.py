"""Self-supervised pretraining, with any method of ``models.METHODS``.

    python pretrain.py --dataset ntu60 --protocol xsub --data-root DATA --output-dir OUT

reproduces the published run; every recipe value (docs/protocols.md) is a default from
``options/presets.py`` and can be overridden. Multi-GPU: ``torchrun --nproc_per_node N
pretrain.py ...`` (``--batch-size`` is per process).
"""
import argparse
import inspect

import torch
from torch.utils.data import DataLoader, DistributedSampler

from engine import first_views, pretrain_epochs
from evaluation.monitor import KNNMonitor, KNNMonitors
from fast.self_check import check_before_run
from fast.settings import add_speed_arguments
from feeder.augment import ViewAugment
from feeder.datasets import PretrainDataset, collate_clips
from feeder.info import dataset_info
from feeder.modalities import MODALITIES
from feeder.offline import check_step
from feeder.pool import (SAMPLING, BalancedSampler, PooledFolder, in_layout, open_pool, pooled_info, pooled_parts,
                         read_pool)
from models import DEFAULT_METHOD, ENCODERS, METHODS, build_method, method_class, method_settings
from options.args import (add_settings, format_default, get_args_parser, get_augment_parser,
                          get_optim_parser, non_negative_int, positive_int, settle_device, show_defaults)
from options.presets import recipe
from options.resolve import pretraining_settings, rules_report
from utils import run_folder
from utils.checkpoint_io import read_checkpoint, restore_run_state
from utils.dist import barrier, init_distributed, is_main_process, launch_env
from utils.rng import get_rng_state, seed_everything, set_rng_state
from utils.run import announce, run_cli
from utils.schedule import make_optimizer


def get_pretrain_parser():
    parser = argparse.ArgumentParser('pretraining', parents=[get_args_parser(), get_optim_parser(), get_augment_parser()],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--method', default=None, choices=list(METHODS),
                        help=f'the self-supervised method (models.METHODS; docs/method.md, "Methods"; default: '
                             f'{DEFAULT_METHOD}, on small data with no --encoder the small-data default '
                             '(docs/protocols.md), or what the checkpoint resumed records)')
    parser.add_argument('--modalities', nargs='+', default=None, choices=MODALITIES,
                        help='the streams the method trains, each from its modality of the clips')
    pool = parser.add_argument_group('pooling datasets (docs/pretraining.md, "Pooling datasets")')
    pool.add_argument('--pool', action='append', default=None, metavar='ROOT:BENCHMARK',
                      help="also pretrain on this prepared benchmark's training part, its clips mapped onto the run's "
                           'skeleton by joint names (repeat for several)')
    pool.add_argument('--layout', default=None, metavar='NAME',
                      help="the run's skeleton: a built-in layout or a layout JSON file, into which the run's own "
                           "benchmark and every pooled one are mapped, with the most persons any of them has "
                           "(default: the run's own dataset's skeleton)")
    pool.add_argument('--pool-sampling', default=None, choices=SAMPLING,
                      help='proportional: every clip of the pool once an epoch (the default); balanced: each '
                           'benchmark the same share of an epoch')
    add_speed_arguments(parser)
    add_settings(parser.add_argument_group("each method's own settings (models.METHODS; a method refuses another's)"),
                 method_settings().values())
    out = parser.add_argument_group('output')
    out.add_argument('--save-every', type=positive_int, default=None, help='keep checkpoint_XXXX.pth every N epochs')
    out.add_argument('--resume', default=None, help='checkpoint to continue from')
    out.add_argument('--auto-resume', action='store_true',
                     help='continue the run in OUTPUT_DIR from its newest checkpoint that reads, if any')
    out.add_argument('--overwrite', action='store_true',
                     help='OUTPUT_DIR holds an earlier run: move it aside (OUTPUT_DIR.replaced-<time>) and start anew')
    out.add_argument('--knn-every', type=non_negative_int, default=None,
                     help='kNN monitor (1-NN and 20-NN top-1 on the benchmark\'s val part) every N epochs and '
                          'at the last; 0 turns it off (default: a tenth of the run)')
    out.add_argument('--quiet', action='store_true', help='no progress bars')
    out.add_argument('--drop-unread', action='store_true',
                     help="drop, with a line saying so, the flags that the run's method and encoder do not read, "
                          'instead of refusing them (for scripts that give one set of flags to several methods)')
    out.add_argument('--print-freq', type=positive_int, default=20,
                     help='steps between progress updates (and checks for a non-finite loss)')

    def note(key):
        changed = [(f'--encoder {e}', cls.RECIPE[key]) for e, cls in ENCODERS.items() if key in cls.RECIPE]
        changed += [(f'--method {m}', cls.RECIPE[key]) for m, cls in METHODS.items() if key in cls.RECIPE]
        return '; '.join(f'{who}: {format_default(v)}' for who, v in changed) or None
    show_defaults(parser, lambda dataset: recipe(dataset)[0], note)
    return parser


def resolve_settings(args, dataset, device, launch=(0, 1, 0), recorded=None, resume=None, parts=None):
    """The run's settings and speed settings (:func:`options.resolve.pretraining_settings`)."""
    return pretraining_settings(args, get_pretrain_parser(), dataset, device, launch, recorded, resume, parts)


def check_settings(args, folder, dataset):
    """Inconsistent settings are errors before any work starts."""
    global_batch = args.batch_size * args.world_size
    method = METHODS[args.method]  # a method may say what of its own settings cannot work
    problems = method.problems(args, global_batch) if hasattr(method, 'problems') else []
    try:
        folder.check(dataset)
    except ValueError as e:
        problems.append(str(e))
    if len(folder) < global_batch:
        problems.append(f'{folder.data_path} has {len(folder)} clips, fewer than one global batch ({global_batch})')
    if args.min_crop > args.frames or args.min_crop < 1:
        problems.append(f'--min-crop {args.min_crop} must be between 1 and --frames {args.frames}')
    if problems:
        raise SystemExit('error: ' + '\n       '.join(problems))


def wrap_distributed(model, args, device):
    """DDP with synchronised BatchNorm on CUDA. The CPU (gloo) path has no SyncBatchNorm, so
    there rank 0's buffers (BatchNorm statistics, queues) are broadcast at every forward instead."""
    if not args.distributed:
        return model
    if device.type == 'cuda':
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = torch.nn.parallel.DistributedDataParallel
    # newer PyTorch renames broadcast_buffers; both mean "sync buffers before every forward"
    sync = 'forward_sync_buffers' if 'forward_sync_buffers' in inspect.signature(ddp).parameters else 'broadcast_buffers'
    return ddp(model, device_ids=[args.local_rank] if device.type == 'cuda' else None,
               **{sync: device.type != 'cuda'})


def checkpoint_to_resume(args):
    """``(path, checkpoint)`` of ``--resume``, or of ``--auto-resume`` in the output folder;
    ``(None, None)`` for a new run."""
    if args.resume:
        return args.resume, read_checkpoint(args.resume, '--resume')
    if args.auto_resume and args.output_dir:
        return run_folder.find_resume(args.output_dir)
    return None, None


def views_of(args, dataset):
    """The pretraining views of the run's method (its ``VIEWS``), its own settings at hand."""
    method = method_class(args.method)
    return ViewAugment.from_args(args, dataset.layout, dataset.coordinates, method.VIEWS,
                                 [s.name for s in getattr(method, 'SETTINGS', ())])


def start_run(args, dataset, parts):
    """What a run checks and says before it builds anything: the offline step and the settings
    against the training part (returned), the output folder claimed (rank 0), the settings and
    the small-data rules that gave some of them printed."""
    if args.speed_fallback:
        print(f'continuing on --speed reference, as this run has since its self-check: {args.speed_fallback}')
    rules = rules_report(args)
    check_step(args.offline_step, dataset)
    folder = PooledFolder(open_pool(parts, args.offline_step))
    check_settings(args, folder, dataset)
    if is_main_process():
        aside = run_folder.claim(args.output_dir, args.resume, args.auto_resume, args.overwrite)
        if aside:
            print(f'--overwrite: moved the earlier run in {args.output_dir} to {aside}')
    barrier()
    announce(args)
    for part in folder.parts if args.pool or args.layout else ():
        print(f'pool: {part.name}, {len(part.folder)} training clips'
              + (f'; {part.adapt.summary()}' if part.adapt is not None else ''))
    if rules:
        print(f'small-data rules (docs/protocols.md) for the {folder.part} part of {args.protocol}'
              + (f' and the pool ({len(folder)} clips)' if args.pool else '') + ':', *rules, sep='\n')
    return folder


def unwrapped(model):
    """The model itself, without its DDP wrapper."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def print_parameters(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = sum(s.encoder.fixed_zeros for s in model.encoders().values())
    zeros = f' (plus {fixed:,} entries held at zero by the encoders\' construction)' if fixed else ''
    print(f'trainable parameters: {trainable - fixed:,}{zeros}')


def optimizer_for(model, args, speed):
    return make_optimizer(model.named_parameters(), args, **speed.optimizer_options())


def build_training(args, dataset, speed, device):
    """The model (DDP-wrapped when distributed), its optimizer and gradient scaler."""
    model = wrap_distributed(build_method(args, dataset, **speed.model_options()).to(device), args, device)
    return model, optimizer_for(model, args, speed), torch.amp.GradScaler(device.type, enabled=speed.float16_scaling)


def main(args):
    """Pretrain with the parsed command line ``args``, which are read here once: what the run uses
    are the settings resolved from them (:func:`resolve_settings`)."""
    device = settle_device(args.device)  # first: the process group and each process's GPU follow from it
    launch = launch_env()
    init_distributed(device, *launch)
    resume, checkpoint = checkpoint_to_resume(args)
    recorded = checkpoint.get('args') if isinstance(checkpoint, dict) else None
    recorded = recorded if isinstance(recorded, dict) else None
    # the small-data rules see the pool's size; a resumed run pools what it pooled, in the skeleton it had
    # (the pool read once: its parts serve the rules, the record and the folder)
    own = dataset_info(args.dataset, args.data_root)
    pool = read_pool(args.pool or (recorded or {}).get('pool') or [])
    run = in_layout(own, args.layout or (recorded or {}).get('layout'), pool)
    parts = pooled_parts(pool, args.data_root, args.protocol, own, run)
    dataset = pooled_info(run, args.protocol, parts)
    args, speed = resolve_settings(args, dataset, device, launch, recorded, resume, parts)
    folder = start_run(args, dataset, parts)

    device = torch.device(args.device, args.local_rank if args.device == 'cuda' else None)
    speed.set_matmul_precision()
    seed_everything(args.seed)  # the same initial model and queues on every rank
    model, optimizer, scaler = build_training(args, dataset, speed, device)
    seed_everything(args.seed + args.rank)  # different augmentations on every rank
    augment = views_of(args, dataset)
    on_device = speed.augment_on == 'device'
    clips = PretrainDataset(folder, augment=None if on_device else augment)
    start_epoch = restore_run_state(checkpoint, unwrapped(model), optimizer, scaler, args) if args.resume else 0
    if speed.computes_differently and args.self_check == 'on':
        rng = get_rng_state()  # the run draws as it would without the check
        views = first_views(clips, augment, on_device, device, args.batch_size)
        args, speed, model, optimizer, scaler = check_before_run(
            model, optimizer, scaler, speed, args, views, lambda: build_method(args, dataset).to(device),
            lambda a, s: build_training(a, dataset, s, device), optimizer_for)
        set_rng_state(rng)
    print_parameters(unwrapped(model))

    sampler = BalancedSampler(folder.sizes, args.seed, args.rank, args.world_size) \
        if args.pool_sampling == 'balanced' else DistributedSampler(clips, seed=args.seed) if args.distributed else None
    loader = DataLoader(clips, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, pin_memory=device.type == 'cuda', drop_last=True,
                        collate_fn=collate_clips if on_device else None)
    monitor = KNNMonitors([(part.name if k else '', KNNMonitor(part.root, part.info, args.frames, args.knn_every,
                                                                args.epochs, args.workers, device, part.folder.transform))
                           for k, part in enumerate(folder.parts)])
    if monitor.note:
        print(monitor.note)
    pretrain_epochs(model, optimizer, scaler, speed, loader, sampler, augment if on_device else None, monitor, args,
                    dataset, start_epoch, checkpoint.get('log') if start_epoch else None)
    return unwrapped(model)


if __name__ == '__main__':
    run_cli(main, get_pretrain_parser())
