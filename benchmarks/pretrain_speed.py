"""Pretraining throughput: training steps, the data pipeline and kNN evaluation.

    python benchmarks/pretrain_speed.py [--device cuda] [--config published|ci|both] [--steps N]
                                        [--variants NAME ...] [--end-to-end]

1. Whole training steps (three modalities: forward, InfoNCE, CMD loss, backward, SGD step,
   momentum update, enqueue; the step of ``pretrain.py``) on random clips of the configured
   shape, side by side for the frame-by-frame formulation the published code runs and for our
   implementations of the same function: samples/s, s/step, peak memory, speed-up over
   frame-by-frame in the same arithmetic. Variants marked * change the storage precision
   (bfloat16) or the recipe (batch); README says which options change what.
2. The data pipeline: augmented pairs per second with the views made per clip in data-loader
   workers, and with the workers only reading clips and the views made per batch on the device.
3. kNN evaluation (all of k = 1, 10, 20) on features of NTU-60's size (smaller on a CPU), and
   the per-epoch checkpoint: a synchronous write against the background saver of pretrain.py.
4. With ``--end-to-end``: ``pretrain.py`` itself at the published NTU-60 recipe on a prepared
   folder of random clips (data loading, augmentation, steps; samples/s of its last epoch).
"""
import argparse
import functools
import json
import os
import pickle
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import pretrain  # noqa: E402
from engine import to_views, train_step  # noqa: E402
from evaluation.knn import knn_predict  # noqa: E402
from evaluation.monitor import KNNMonitor  # noqa: E402
from fast.model import FastCMD  # noqa: E402
from fast.step import GraphedStep  # noqa: E402
from feeder.augment import ViewAugment  # noqa: E402
from models.method import normal  # noqa: E402
from feeder.datasets import PretrainDataset, SkeletonFolder, collate_clips  # noqa: E402
from feeder.info import dataset_info  # noqa: E402
from feeder.layouts import NTU25  # noqa: E402
from feeder.modalities import MODALITIES  # noqa: E402
from models import EncoderConfig, build_encoder  # noqa: E402
from tests.reference import FrameByFrameGRUEncoder  # noqa: E402
from utils.rng import get_rng_state  # noqa: E402
from utils.checkpoint_io import BackgroundSaver, save_atomic  # noqa: E402

NTU60 = dataset_info('ntu60')
CONFIGS = {
    # the published recipe (docs/protocols.md)
    'published': dict(batch=64, frames=64, hidden=1024, layers=3, queue=16384, topk=8192),
    # small enough for a 2-core CPU
    'ci': dict(batch=32, frames=32, hidden=128, layers=3, queue=256, topk=128),
}

# name -> how the step is computed. 'impl': frame-by-frame (the published formulation), fused
# (one cuDNN call per encoder) or grouped (all modalities per frame); 'graph': the step as a CUDA
# graph; 'overlap': keys on a second stream; 'kernels': the grouped recurrence's kernels ('frame':
# one Triton kernel per frame); 'fp16': its products' operands rounded to float16; 'tf32': TF32
# matrix products (else full float32); 'amp': bfloat16 autocast; 'batch': a multiple of the
# configured batch (a recipe change). pretrain.py's CUDA default is 'grouped+graph overlap frame
# fp16-ops tf32'; with --no-recurrent-fp16, 'grouped+graph overlap tf32'.
VARIANTS = {
    'frame-by-frame': dict(impl='frame-by-frame'),
    'frame-by-frame tf32': dict(impl='frame-by-frame', tf32=True),
    'fused': dict(impl='fused'),
    'fused tf32': dict(impl='fused', tf32=True),
    'grouped tf32': dict(impl='grouped', tf32=True),
    'grouped+graph tf32': dict(impl='grouped', graph=True, tf32=True),
    'grouped+graph overlap': dict(impl='grouped', graph=True, overlap=True),
    'grouped+graph overlap tf32': dict(impl='grouped', graph=True, overlap=True, tf32=True),
    'grouped+graph overlap torch-gates tf32': dict(impl='grouped', graph=True, overlap=True, tf32=True,
                                                   kernels='torch'),
    'grouped frame fp16-ops tf32': dict(impl='grouped', tf32=True, kernels='triton-frame', fp16=True),
    'grouped+graph overlap frame tf32': dict(impl='grouped', graph=True, overlap=True, tf32=True,
                                             kernels='triton-frame'),
    'grouped+graph overlap frame fp16-ops tf32': dict(impl='grouped', graph=True, overlap=True, tf32=True,
                                                      kernels='triton-frame', fp16=True),
    'fused bf16*': dict(impl='fused', amp=True),
    'grouped+graph overlap bf16*': dict(impl='grouped', graph=True, overlap=True, amp=True),
    'grouped+graph overlap frame bf16*': dict(impl='grouped', graph=True, overlap=True, amp=True,
                                              kernels='triton-frame'),
    'grouped+graph overlap tf32 batch x4*': dict(impl='grouped', graph=True, overlap=True, tf32=True, batch=4),
    'grouped+graph overlap frame fp16-ops tf32 batch x4*': dict(impl='grouped', graph=True, overlap=True,
                                                                tf32=True, kernels='triton-frame', fp16=True,
                                                                batch=4),
    'grouped+graph overlap bf16 batch x4*': dict(impl='grouped', graph=True, overlap=True, amp=True, batch=4),
    # last: a failed capture can leave the CUDA context unusable for what follows
    'fused+graph tf32': dict(impl='fused', graph=True, tf32=True),
}
VARIANTS['grouped'] = dict(impl='grouped')  # the CPU's choice (no TF32, graphs or streams there)
CPU_VARIANTS = ['frame-by-frame', 'fused', 'grouped']
CUDA_VARIANTS = [name for name in VARIANTS if name != 'grouped']


def cmd_settings(cfg):
    """What ``pretrain.py`` resolves for CMD on NTU-60 x-sub at ``cfg``'s sizes (the rest its published recipe)."""
    argv = ['--data-root', '.', '--output-dir', '.', '--dataset', 'ntu60', '--protocol', 'xsub', '--method', 'cmd',
            '--hidden-size', str(cfg['hidden']), '--num-layers', str(cfg['layers']), '--queue-size', str(cfg['queue']),
            '--topk', str(cfg['topk'])]
    return pretrain.resolve_settings(pretrain.get_pretrain_parser().parse_args(argv), NTU60, torch.device('cpu'))[0]


def published_gru(cfg):
    """One encoder of CMD's published recipe at ``cfg``'s sizes."""
    return build_encoder(EncoderConfig.from_dict(vars(cmd_settings(cfg))), NTU25, persons=2)


def build(variant, cfg, device):
    def make_encoder():
        if variant['impl'] == 'frame-by-frame':
            return FrameByFrameGRUEncoder(150, cfg['hidden'], cfg['layers'], 128, mlp=True)
        return published_gru(cfg)
    torch.manual_seed(0)
    with device:  # initialise on the device: the published sizes are slow to build on the host
        model = FastCMD.build(make_encoder, cmd_settings(cfg), NTU60, grouped=variant['impl'] == 'grouped',
                              kernels=variant.get('kernels', 'auto'), recurrent_fp16=variant.get('fp16', False),
                              overlap_keys=variant.get('overlap', False)).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=1e-4, fused=device.type == 'cuda')  # as pretrain.py
    return model, optimizer


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def make_step(variant, cfg, device):
    """``pretrain.py``'s training step for ``variant`` and its batch size."""
    if device.type == 'cuda':  # as pretrain.py: float32 products unless the variant says TF32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = variant.get('tf32', False)
    model, optimizer = build(variant, cfg, device)
    scaler, amp = torch.amp.GradScaler(device.type, enabled=False), variant.get('amp', False)
    step = (GraphedStep(model, optimizer, scaler, amp) if variant.get('graph', False)
            else functools.partial(train_step, model, optimizer, scaler, amp=amp))
    return step, cfg['batch'] * variant.get('batch', 1)


def time_steps(variant, cfg, device, steps, warmup):
    """(samples/s, s/step, peak GiB) of ``pretrain.py``'s training step."""
    step, batch = make_step(variant, cfg, device)
    # a few batches in turn, so a graph replay must really read its new inputs
    views = [[torch.randn(batch, 3, cfg['frames'], 25, 2, device=device) for _ in range(2)] for _ in range(3)]
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    warmup += step.warmup + 1 if isinstance(step, GraphedStep) else 0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        loss, _ = step(views[i % len(views)])
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    if not torch.isfinite(loss):
        raise FloatingPointError(f'non-finite loss {loss.item()}')
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == 'cuda' else float('nan')
    del step
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return batch / seconds, seconds, peak


def profile_step(variant, cfg, device, rows=15):
    """Device time per kernel over two steps of ``variant`` (after its warm-up), largest first."""
    from torch.profiler import ProfilerActivity, profile
    step, batch = make_step(variant, cfg, device)
    views = [torch.randn(batch, 3, cfg['frames'], 25, 2, device=device) for _ in range(2)]
    for _ in range((step.warmup if isinstance(step, GraphedStep) else 0) + 2):
        step(views)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            step(views)
        sync(device)
    key = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def write_random_split(split, clips, min_frames, seed=0, part='train'):
    """A prepared part of random clips (300 stored frames, ``min_frames`` to 300 valid)."""
    rng = np.random.default_rng(seed)
    os.makedirs(split, exist_ok=True)
    data = np.lib.format.open_memmap(os.path.join(split, f'{part}_data_joint.npy'), mode='w+',
                                     dtype=np.float32, shape=(clips, 3, 300, 25, 2))
    for i in range(0, clips, 512):
        data[i:i + 512] = rng.normal(size=data[i:i + 512].shape).astype(np.float32)
    data.flush()
    np.save(os.path.join(split, f'{part}_num_frame.npy'), rng.integers(min_frames, 300, size=clips))
    with open(os.path.join(split, f'{part}_label.pkl'), 'wb') as f:
        pickle.dump(([f'S001C001P001R001A{i % 60 + 1:03d}' for i in range(clips)], [i % 60 for i in range(clips)]), f)


def time_knn_monitor(cfg, device, workers, train, val):
    """Seconds of one kNN monitor pass of ``pretrain.py`` (features of ``train`` and ``val`` random
    clips with three encoders of ``cfg``, then 1-NN and 20-NN)."""
    with tempfile.TemporaryDirectory() as root:
        write_random_split(root, train, min_frames=30)
        write_random_split(root, val, min_frames=30, seed=1, part='val')
        torch.manual_seed(0)
        with device:
            encoders = {m: published_gru(cfg) for m in MODALITIES}
        monitor = KNNMonitor(root, NTU60, cfg['frames'], 1, 1, workers, device)
        monitor(encoders)  # warm-up: cuDNN plans, loader start
        sync(device)
        start = time.perf_counter()
        monitor(encoders)
        sync(device)
        return time.perf_counter() - start


def time_data_pipeline(device, frames, batch, workers, clips=1024):
    """(augmented pairs per second, seconds to the first batch), views made in the workers or on
    ``device``. The wait for the first batch (the workers starting) recurs every epoch."""
    out = {}
    with tempfile.TemporaryDirectory() as root:
        write_random_split(root, clips, min_frames=30)
        folder = SkeletonFolder(root, 'train')
        augment = ViewAugment(25, (normal, normal), frames=frames, min_crop=frames, shear=1.0, corruption=0.5,
                              rotation=0.0)
        for where in ('loader', 'device'):
            dataset = PretrainDataset(folder, augment=augment if where == 'loader' else None)
            loader = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True,
                                collate_fn=collate_clips if where == 'device' else None,
                                pin_memory=device.type == 'cuda')
            start, pairs, first_batch = time.perf_counter(), 0, None
            for clips in loader:  # (not ``batch``: that is the batch size, read again on the next pass)
                if first_batch is None:
                    first_batch = time.perf_counter() - start
                views = to_views(clips, device, augment if where == 'device' else None)
                pairs += len(views[0])
            sync(device)
            out[where] = pairs / (time.perf_counter() - start), first_batch
    return out


def time_knn(device, train, test, dim, ks=(1, 10, 20)):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(train + test, dim, generator=gen).to(device)
    labels = torch.randint(0, 60, (train,), generator=gen).to(device)
    sync(device)
    start = time.perf_counter()
    knn_predict(feats[:train], labels, feats[train:], ks, 60)
    sync(device)
    return time.perf_counter() - start


def time_checkpoint(cfg, device, folder):
    """The per-epoch checkpoint of ``pretrain.py`` (model, SGD momentum, RNG) at ``cfg``: its size
    and the seconds a synchronous write takes; with the background saver, for its first save and
    a later one (which reuses its host buffers), the seconds the training loop is held (the copy
    to host memory) and the seconds until the write is done."""
    model, optimizer = build(VARIANTS['grouped'], cfg, device)
    for group in optimizer.param_groups:  # the momentum buffers a first step creates
        for p in group['params']:
            optimizer.state[p]['momentum_buffer'] = torch.zeros_like(p)
    checkpoint = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': 1,
                  'rng': get_rng_state()}
    path = os.path.join(folder, 'checkpoint.pth')
    sync(device)
    start = time.perf_counter()
    save_atomic(checkpoint, path)
    plain = time.perf_counter() - start
    size = os.path.getsize(path) / 1e9
    saver, background = BackgroundSaver(), []
    for _ in range(2):
        start = time.perf_counter()
        saver.save(checkpoint, [path])
        held = time.perf_counter() - start
        saver.wait()
        background.append((held, time.perf_counter() - start))
    return size, plain, background


def time_end_to_end(clips, epochs, workers, runs):
    """``pretrain.py`` at the published NTU-60 recipe on ``clips`` random prepared clips, once per
    list of extra arguments in ``runs``; returns each run's log (one record per epoch)."""
    logs = []
    with tempfile.TemporaryDirectory() as root:
        write_random_split(os.path.join(root, 'data', 'xsub'), clips, min_frames=64)
        for i, extra in enumerate(runs):
            out = os.path.join(root, f'out{i}')
            args = pretrain.get_pretrain_parser().parse_args(
                ['--dataset', 'ntu60', '--protocol', 'xsub', '--data-root', os.path.join(root, 'data'),
                 '--output-dir', out, '--epochs', str(epochs), '--workers', str(workers), '--quiet', *extra])
            pretrain.main(args)
            with open(os.path.join(out, 'log.txt')) as f:
                logs.append([json.loads(line) for line in f])
            shutil.rmtree(out)
    return logs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--config', default=None, choices=['published', 'ci', 'both'],
                        help='default: both on CUDA, ci on CPU')
    parser.add_argument('--variants', nargs='+', default=None, choices=list(VARIANTS),
                        help=f'default: all but grouped on CUDA, {" ".join(CPU_VARIANTS)} on CPU')
    parser.add_argument('--steps', type=int, default=None, help='timed steps per measurement')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--workers', type=int, default=2, help='data-loader workers for the pipeline timing')
    parser.add_argument('--knn-size', type=int, nargs=3, default=None, metavar=('TRAIN', 'TEST', 'DIM'),
                        help='default: 40091 16487 2048 (NTU-60 x-sub) on CUDA, 4000 1600 2048 on CPU')
    parser.add_argument('--monitor-size', type=int, nargs=2, default=None, metavar=('TRAIN', 'VAL'),
                        help='clips of the kNN monitor timing (default: 40091 16487, NTU-60 x-sub, on CUDA; '
                             '2000 800 on CPU)')
    parser.add_argument('--profile', default=None, choices=list(VARIANTS),
                        help='also print the kernels of two steps of this variant at the last config')
    parser.add_argument('--end-to-end', type=int, default=0, metavar='CLIPS',
                        help='also run pretrain.py for 3 epochs on this many random clips')
    parser.add_argument('--end-to-end-args', nargs='*', default=[''], metavar='ARGS',
                        help="pretrain.py's extra arguments, one quoted string per run, each starting with a "
                             "space so that it is not read as an option here: '' ' --amp' (default: one run "
                             "with the defaults)")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = args.config or ('both' if device.type == 'cuda' else 'ci')
    names = ['ci', 'published'] if config == 'both' else [config]
    variants = args.variants or (CUDA_VARIANTS if device.type == 'cuda' else CPU_VARIANTS)
    steps = args.steps or (20 if device.type == 'cuda' else 3)
    name = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
            f'CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)')
    print(f'device: {name}; torch {torch.__version__}; {steps} timed steps after {args.warmup} warm-up '
          f'(graphs: after 3 eager steps and the capture)')
    print(f'{"config":<10}{"variant":<42}{"batch":>6}{"samples/s":>11}{"s/step":>9}{"peak GiB":>10}{"speed-up":>10}')
    # the monitor's cost is given against an epoch of pretrain.py's default step on this device
    default_variant = 'grouped+graph overlap frame fp16-ops tf32' if device.type == 'cuda' else 'fused'
    rate_of_default = {}
    for cfg_name in names:
        cfg = CONFIGS[cfg_name]
        base = {}
        for variant in variants:
            # the frame-by-frame step takes most of a second at the published size: time fewer
            n = min(steps, 3) if variant.startswith('frame-by-frame') and cfg_name == 'published' else steps
            try:
                rate, seconds, peak = time_steps(VARIANTS[variant], cfg, device, n, args.warmup)
            except Exception as e:  # one failing variant must not cost the others' figures
                print(f'{cfg_name:<10}{variant:<42} failed: {type(e).__name__}: {str(e)[:200]}')
                continue
            # speed-up over the frame-by-frame step in the same arithmetic (TF32 or float32)
            tf32 = VARIANTS[variant].get('tf32', False)
            if VARIANTS[variant]['impl'] == 'frame-by-frame':
                base[tf32] = rate
            ratio = f'{rate / base[tf32]:.1f}x' if tf32 in base else '-'
            if variant == default_variant:
                rate_of_default[cfg_name] = rate
            print(f'{cfg_name:<10}{variant:<42}{cfg["batch"] * VARIANTS[variant].get("batch", 1):>6}{rate:>11.1f}'
                  f'{seconds:>9.4f}{peak:>10.2f}{ratio:>10}', flush=True)
        print(f'{"":<10}({", ".join(f"{k} {v}" for k, v in cfg.items())})')

    cfg = CONFIGS[names[-1]]
    train, val = args.monitor_size or ((40091, 16487) if device.type == 'cuda' else (2000, 800))
    seconds = time_knn_monitor(cfg, device, args.workers, train, val)
    line = f'\nkNN monitor ({train} + {val} clips, {names[-1]} config): {seconds:.2f} s'
    if rate_of_default:
        epoch = train / rate_of_default[names[-1]]
        line += (f'; an epoch of {train} clips at the {default_variant} rate ({rate_of_default[names[-1]]:.0f} '
                 f'samples/s) takes {epoch:.1f} s, so each monitored epoch costs {100 * seconds / epoch:.1f}% more '
                 f'({10 * seconds / epoch:.1f}% of the run at the default of every tenth epoch)')
    print(line, flush=True)
    if args.profile:
        print(f'\nprofile of two {args.profile} steps:\n{profile_step(VARIANTS[args.profile], cfg, device)}')
    pipeline = time_data_pipeline(device, cfg['frames'], cfg['batch'], args.workers)
    print(f'\ndata pipeline ({args.workers} workers, batch {cfg["batch"]}, {cfg["frames"]} frames): '
          f'views made in the workers {pipeline["loader"][0]:.0f} pairs/s, '
          f'on the {device.type} per batch {pipeline["device"][0]:.0f} pairs/s; first batch after '
          f'{pipeline["loader"][1]:.2f} s and {pipeline["device"][1]:.2f} s (workers starting, once per epoch)')
    train, test, dim = args.knn_size or ((40091, 16487, 2048) if device.type == 'cuda' else (4000, 1600, 2048))
    print(f'kNN (k = 1, 10, 20) of {test} x {train} features, {dim} dims: {time_knn(device, train, test, dim):.2f} s')
    with tempfile.TemporaryDirectory() as folder:
        size, plain, background = time_checkpoint(cfg, device, folder)
    (held, done), (held_later, done_later) = background
    print(f'checkpoint of an epoch ({size:.2f} GB, {tempfile.gettempdir()}): written in {plain:.2f} s; with the '
          f'background saver the training loop is held {held:.2f} s at the first save, {held_later:.2f} s at a '
          f'later one (the copy to host memory), the writes done after {done:.2f} and {done_later:.2f} s')
    if args.end_to_end:
        runs = [['--device', device.type, '--save-every', '100', *extra.split()] for extra in args.end_to_end_args]
        for extra, log in zip(args.end_to_end_args, time_end_to_end(args.end_to_end, 3, args.workers, runs)):
            rates = ', '.join(f'epoch {r["epoch"]} {r["samples_per_s"]:.0f}' for r in log)
            print(f'pretrain.py {extra or "(defaults)"}, published NTU-60 recipe, {args.end_to_end} random clips, '
                  f'{args.workers} workers: {rates} samples/s')


if __name__ == '__main__':
    main()
