"""Self-supervised CMD pretraining.

    python pretrain.py --dataset ntu60 --protocol xsub --data-root DATA --output-dir OUT

reproduces the published run; every recipe value (section 9 of the method notes) is a default
from ``options/presets.py`` and can be overridden. Multi-GPU: ``torchrun --nproc_per_node N
pretrain.py ...`` (``--batch-size`` is per process).
"""
import argparse
import inspect
import json
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter

from engine import TrainStep, adjust_learning_rate, train_one_epoch
from feeder.datasets import PairAugment, PretrainDataset, SkeletonFolder, collate_clips
from feeder.layouts import get_layout
from feeder.modalities import MODALITIES
from models import build_cmd
from models.recurrence import KERNELS
from options.args import get_args_parser, resolve_common
from options.presets import DATASETS, pretrain_recipe
from utils.misc import (BackgroundSaver, announce, append_jsonl, get_rng_state, init_distributed, is_main_process,
                        plain, run_cli, seed_everything, set_rng_state, write_text_atomic)


def get_pretrain_parser():
    parser = argparse.ArgumentParser('CMD pretraining', parents=[get_args_parser()], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    opt = parser.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=int, default=None)
    opt.add_argument('--lr', type=float, default=None, help='base learning rate (SGD)')
    opt.add_argument('--schedule', type=int, nargs='*', default=None, help='epochs where lr drops x0.1')
    opt.add_argument('--cos', action='store_true', help='cosine learning-rate decay instead of steps')
    opt.add_argument('--momentum', type=float, default=None, help='SGD momentum')
    opt.add_argument('--weight-decay', type=float, default=None)
    speed = parser.add_argument_group('speed (README: which options change the arithmetic)')
    speed.add_argument('--amp', action='store_true', help='mixed precision (changes the arithmetic; see README)')
    speed.add_argument('--amp-dtype', default='bfloat16', choices=['bfloat16', 'float16'],
                       help='bfloat16 (CPU or CUDA), or float16 with gradient scaling (CUDA)')
    speed.add_argument('--tf32', default=None, action=argparse.BooleanOptionalAction,
                       help="TF32 matrix products on CUDA (default on: PyTorch's cuDNN default, so what the "
                            'published code computes on Ampere and newer GPUs); --no-tf32 for full float32')
    speed.add_argument('--gru-impl', default=None, choices=['fused', 'grouped'],
                       help='fused: one cuDNN call per encoder; grouped: all modalities advance together '
                            'frame by frame (same function; default grouped for one CUDA process, else fused)')
    speed.add_argument('--gru-kernels', default='auto', choices=list(KERNELS),
                       help="the grouped recurrence's kernels (models/recurrence.py; same function)")
    speed.add_argument('--recurrent-fp16', default=None, action=argparse.BooleanOptionalAction,
                       help="round the grouped GRU layers' product operands to float16 (the forward's input "
                            'and recurrent products, the recurrent weights in the backward): TF32\'s 10-bit '
                            'fraction in half the bytes (the arithmetic of TF32, see README; default: on '
                            'with TF32 for the grouped recurrence on CUDA without --amp)')
    speed.add_argument('--overlap-keys', default=None, action=argparse.BooleanOptionalAction,
                       help='compute the keys on a second CUDA stream beside the queries (same function; '
                            'default: on for one CUDA process)')
    speed.add_argument('--cuda-graph', default=None, action=argparse.BooleanOptionalAction,
                       help='capture the whole training step as a CUDA graph (default: on for one CUDA '
                            'process with --gru-impl grouped)')
    cmd = parser.add_argument_group('CMD')
    cmd.add_argument('--modalities', nargs='+', default=list(MODALITIES), choices=MODALITIES,
                     help='one modality gives plain MoCo')
    cmd.add_argument('--queue-size', type=int, default=None)
    cmd.add_argument('--topk', type=int, default=None, help="teacher's neighbours used for distillation")
    cmd.add_argument('--contrast-t', type=float, default=None, help='InfoNCE temperature')
    cmd.add_argument('--teacher-t', type=float, default=None)
    cmd.add_argument('--student-t', type=float, default=None)
    cmd.add_argument('--momentum-key', type=float, default=None, help='key encoder momentum')
    cmd.add_argument('--cmd-weight', type=float, default=None, help='0 turns distillation off')
    cmd.add_argument('--min-crop', type=int, default=None, help='shortest temporal crop (default: --frames)')
    parser.add_argument('--augment-on', default=None, choices=['loader', 'device'],
                        help='where the two views are made: per clip in the data-loader workers, or per '
                             'batch on the training device (default: device on CUDA, loader on CPU)')
    out = parser.add_argument_group('output')
    out.add_argument('--save-every', type=int, default=None, help='keep checkpoint_XXXX.pth every N epochs')
    out.add_argument('--resume', default=None, help='checkpoint to continue from')
    out.add_argument('--auto-resume', action='store_true', help='continue from OUTPUT_DIR/checkpoint.pth if present')
    out.add_argument('--quiet', action='store_true', help='no progress bars')
    out.add_argument('--print-freq', type=int, default=20,
                     help='steps between progress updates (and checks for a non-finite loss)')
    return parser


def resolve_args(args):
    resolve_common(args, pretrain_recipe(args.dataset, args.encoder or 'gru'))
    if args.min_crop is None:
        args.min_crop = args.frames
    if args.augment_on is None:
        args.augment_on = 'device' if args.device == 'cuda' else 'loader'
    args.modalities = list(dict.fromkeys(args.modalities))
    if args.gru_impl is None:
        # grouped pays off through the CUDA graph (one process); eager, cuDNN's fused call is faster
        grouped = (args.device == 'cuda' and args.world_size == 1 and args.encoder == 'gru'
                   and args.gru_mode == 'published')
        args.gru_impl = 'grouped' if grouped else 'fused'
    if args.tf32 is None:
        args.tf32 = args.device == 'cuda'
    if args.recurrent_fp16 is None:
        args.recurrent_fp16 = (args.device == 'cuda' and args.gru_impl == 'grouped' and args.tf32 and not args.amp
                               and args.gru_kernels != 'triton')
    if args.overlap_keys is None:
        args.overlap_keys = args.device == 'cuda' and args.world_size == 1
    if args.cuda_graph is None:
        args.cuda_graph = (args.device == 'cuda' and args.world_size == 1 and args.gru_impl == 'grouped'
                           and not (args.amp and args.amp_dtype == 'float16'))
    return args


def check_settings(args, folder, layout, persons):
    """Inconsistent settings are errors before any work starts."""
    global_batch = args.batch_size * args.world_size
    problems = []
    if args.topk > args.queue_size:
        problems.append(f'--topk {args.topk} exceeds --queue-size {args.queue_size}')
    if args.queue_size % global_batch:
        problems.append(f'--queue-size {args.queue_size} is not a multiple of the global batch '
                        f'{global_batch} (--batch-size {args.batch_size} x {args.world_size} processes)')
    if folder.num_joints != layout.num_joints or folder.shape[4] != persons:
        problems.append(f'{folder.data_path} holds {folder.num_joints} joints x {folder.shape[4]} persons, '
                        f'but {args.dataset} uses layout {layout.name} ({layout.num_joints} joints) x {persons}')
    if len(folder) < global_batch:
        problems.append(f'{folder.data_path} has {len(folder)} clips, fewer than one global batch ({global_batch})')
    if args.min_crop > args.frames or args.min_crop < 1:
        problems.append(f'--min-crop {args.min_crop} must be between 1 and --frames {args.frames}')
    if args.amp and args.amp_dtype == 'float16' and args.device != 'cuda':
        problems.append('--amp --amp-dtype float16 needs --device cuda (bfloat16 also runs on the CPU)')
    if args.gru_impl == 'grouped' and (args.encoder != 'gru' or args.gru_mode != 'published'):
        problems.append('--gru-impl grouped needs --encoder gru with --gru-mode published')
    if args.gru_kernels.startswith('triton') and (args.device != 'cuda' or args.gru_impl != 'grouped'):
        problems.append(f'--gru-kernels {args.gru_kernels} needs --device cuda and --gru-impl grouped')
    if args.recurrent_fp16 and (args.gru_impl != 'grouped' or args.gru_kernels == 'triton' or args.amp):
        problems.append('--recurrent-fp16 needs --gru-impl grouped, --gru-kernels auto, torch or triton-frame, '
                        'and float32 storage (no --amp)')
    if args.recurrent_fp16 and args.device == 'cuda' and not args.tf32:
        problems.append('--recurrent-fp16 rounds the products as TF32 does; it contradicts --no-tf32')
    if args.overlap_keys and (args.device != 'cuda' or args.world_size > 1):
        problems.append('--overlap-keys needs --device cuda and a single process')
    if args.cuda_graph and (args.device != 'cuda' or args.world_size > 1):
        problems.append('--cuda-graph needs --device cuda and a single process')
    if args.cuda_graph and args.amp and args.amp_dtype == 'float16':
        problems.append('--cuda-graph cannot capture float16 gradient scaling; use --amp-dtype bfloat16')
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


def main(args):
    init_distributed(args)
    resolve_args(args)
    preset = DATASETS[args.dataset]
    layout, persons = get_layout(preset['layout']), preset['persons']
    folder = SkeletonFolder(os.path.join(args.data_root, args.protocol), 'train')
    check_settings(args, folder, layout, persons)
    announce(args)

    device = torch.device(args.device, args.local_rank if args.device == 'cuda' else None)
    if device.type == 'cuda':
        # explicit either way: PyTorch's own defaults differ between cuDNN (TF32) and cuBLAS (not)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    seed_everything(args.seed)  # the same initial model and queues on every rank
    model = wrap_distributed(build_cmd(args, layout, persons).to(device), args, device)
    model_without_ddp = model.module if args.distributed else model
    seed_everything(args.seed + args.rank)  # different augmentations on every rank
    on_device = args.augment_on == 'device'
    augment = PairAugment(folder.num_joints, args.frames, args.min_crop) if on_device else None
    dataset = PretrainDataset(folder, frames=args.frames, min_crop=args.min_crop, augment=not on_device)
    sampler = DistributedSampler(dataset, seed=args.seed) if args.distributed else None
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, pin_memory=device.type == 'cuda', drop_last=True,
                        collate_fn=collate_clips if on_device else None)

    # fused=True: the same update in one kernel per group of tensors on CUDA. Not with float16
    # gradient scaling: a first step skipped for overflow would leave its momentum buffers unset.
    float16 = args.amp and args.amp_dtype == 'float16'
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                momentum=args.momentum, weight_decay=args.weight_decay,
                                fused=device.type == 'cuda' and not float16)
    scaler = torch.amp.GradScaler(device.type, enabled=float16)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = sum(getattr(m, 'fixed_zeros', 0) for m in model_without_ddp.encoder_q.values())
    zeros = f' (plus {fixed:,} entries held at zero in the block-diagonal GRU matrices)' if fixed else ''
    print(f'trainable parameters: {trainable - fixed:,}{zeros}')

    latest = os.path.join(args.output_dir, 'checkpoint.pth')
    if args.auto_resume and args.resume is None and os.path.isfile(latest):
        args.resume = latest
    start_epoch = 0
    if args.resume:
        checkpoint = torch.load(args.resume, map_location='cpu', weights_only=True)
        try:
            model_without_ddp.load_state_dict(checkpoint['model'])
            optimizer.load_state_dict(checkpoint['optimizer'])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(f'--resume {args.resume} does not fit this model (was it trained with other '
                             f'settings? its args: {checkpoint.get("args")}): {str(e)[:500]}') from None
        scaler.load_state_dict(checkpoint['scaler'])
        start_epoch = checkpoint['epoch']
        set_rng_state(checkpoint['rng'])
        if args.rank:  # only rank 0's RNG state is saved; keep the ranks' streams apart
            seed_everything(args.seed + args.rank + 1000 * start_epoch)
        print(f'resumed from {args.resume} at epoch {start_epoch}')

    step_fn = TrainStep(model, optimizer, scaler, args, graph=args.cuda_graph)
    writer = None
    if is_main_process():
        os.makedirs(args.output_dir, exist_ok=True)
        write_text_atomic(os.path.join(args.output_dir, 'args.json'), json.dumps(plain(vars(args)), indent=1))
        writer = SummaryWriter(log_dir=os.path.join(args.output_dir, 'tensorboard'))

    saver = BackgroundSaver()
    try:
        for epoch in range(start_epoch, args.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = adjust_learning_rate(optimizer, epoch, args)
            stats = train_one_epoch(model, loader, step_fn, device, epoch, args, augment)
            stats['lr'] = lr
            if is_main_process():
                checkpoint = {'model': model_without_ddp.state_dict(), 'optimizer': optimizer.state_dict(),
                              'scaler': scaler.state_dict(), 'epoch': epoch + 1, 'args': plain(vars(args)),
                              'rng': get_rng_state()}
                paths = [latest]
                if epoch % args.save_every == 0 or epoch + 1 == args.epochs:
                    paths.append(os.path.join(args.output_dir, f'checkpoint_{epoch:04d}.pth'))
                record = {'epoch': epoch, **stats}
                saver.save(checkpoint, paths,
                           then=lambda record=record: append_jsonl(os.path.join(args.output_dir, 'log.txt'), record))
                for key, value in stats.items():
                    writer.add_scalar(f'pretrain/{key}', value, epoch)
                writer.flush()
                shown = ', '.join(f'{k} {v:.4g}' for k, v in stats.items())
                print(f'epoch {epoch}: {shown}')
    finally:
        saver.wait()
    if writer is not None:
        writer.close()
    return model_without_ddp


if __name__ == '__main__':
    run_cli(main, get_pretrain_parser())
