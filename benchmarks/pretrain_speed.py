"""Pretraining throughput: training steps, the data pipeline and kNN evaluation.

    python benchmarks/pretrain_speed.py [--device cuda] [--config published|ci|both] [--steps N]

1. Whole training steps (three modalities: forward, InfoNCE, CMD loss, backward, SGD step,
   momentum update, enqueue) on random clips of the configured shape, for the fast GRU path and
   the frame-by-frame formulation of the same function, side by side: samples/s, ratio, peak
   memory.
2. The data pipeline: augmented pairs per second with the views made per clip in data-loader
   workers, and with the workers only reading clips and the views made per batch on the device.
3. kNN evaluation (all of k = 1, 10, 20) on features of NTU-60's size (smaller on a CPU).
"""
import argparse
import os
import pickle
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from feeder.datasets import PairAugment, PretrainDataset, SkeletonFolder, collate_clips  # noqa: E402
from feeder.layouts import NTU25  # noqa: E402
from models.cmd import CMD  # noqa: E402
from models.gru import GRUEncoder  # noqa: E402
from tests.reference import FrameByFrameGRUEncoder  # noqa: E402
from utils.knn import knn_predict  # noqa: E402

CONFIGS = {
    # the published recipe (method notes, section 9)
    'published': dict(batch=64, frames=64, hidden=1024, layers=3, queue=16384, topk=8192),
    # small enough for a 2-core CPU
    'ci': dict(batch=32, frames=32, hidden=128, layers=3, queue=256, topk=128),
}


def build(kind, cfg, device):
    def make_encoder():
        cls = GRUEncoder if kind == 'fast' else FrameByFrameGRUEncoder
        return cls(150, cfg['hidden'], cfg['layers'], 128, mlp=True)
    torch.manual_seed(0)
    model = CMD(make_encoder, NTU25, queue_size=cfg['queue'], topk=cfg['topk']).to(device).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=1e-4)
    return model, optimizer


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_steps(kind, cfg, device, steps, warmup):
    model, optimizer = build(kind, cfg, device)
    views = [torch.randn(cfg['batch'], 3, cfg['frames'], 25, 2, device=device) for _ in range(2)]
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        loss, _ = model(*views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == 'cuda' else float('nan')
    return cfg['batch'] / seconds, seconds, peak


def time_data_pipeline(device, frames, batch, workers, clips=1024):
    """Augmented pairs per second, views made in the workers or on ``device``."""
    rng = np.random.default_rng(0)
    out = {}
    with tempfile.TemporaryDirectory() as root:
        data = np.lib.format.open_memmap(os.path.join(root, 'train_data_joint.npy'), mode='w+',
                                         dtype=np.float32, shape=(clips, 3, 300, 25, 2))
        data[:] = rng.normal(size=data.shape).astype(np.float32)
        data.flush()
        np.save(os.path.join(root, 'train_num_frame.npy'), rng.integers(30, 300, size=clips))
        with open(os.path.join(root, 'train_label.pkl'), 'wb') as f:
            pickle.dump(([str(i) for i in range(clips)], [0] * clips), f)
        folder = SkeletonFolder(root, 'train')
        augment = PairAugment(25, frames)
        for where in ('loader', 'device'):
            dataset = PretrainDataset(folder, frames=frames, augment=where == 'loader')
            loader = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True,
                                collate_fn=collate_clips if where == 'device' else None,
                                pin_memory=device.type == 'cuda')
            start, pairs = time.perf_counter(), 0
            for first, second in loader:
                first, second = first.to(device, non_blocking=True), second.to(device, non_blocking=True)
                if where == 'device':
                    first, second = augment(first, second)
                pairs += len(first)
            sync(device)
            out[where] = pairs / (time.perf_counter() - start)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--config', default=None, choices=['published', 'ci', 'both'],
                        help='default: both on CUDA, ci on CPU')
    parser.add_argument('--steps', type=int, default=None, help='timed steps per measurement')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--workers', type=int, default=2, help='data-loader workers for the pipeline timing')
    parser.add_argument('--knn-size', type=int, nargs=3, default=None, metavar=('TRAIN', 'TEST', 'DIM'),
                        help='default: 40091 16487 2048 (NTU-60 x-sub) on CUDA, 4000 1600 2048 on CPU')
    args = parser.parse_args()
    device = torch.device(args.device)
    config = args.config or ('both' if device.type == 'cuda' else 'ci')
    names = ['ci', 'published'] if config == 'both' else [config]
    steps = args.steps or (20 if device.type == 'cuda' else 3)
    name = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
            f'CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)')
    print(f'device: {name}; torch {torch.__version__}; {steps} timed steps after {args.warmup} warm-up')
    print(f'{"config":<10}{"formulation":<16}{"samples/s":>11}{"s/step":>10}{"peak GiB":>10}')
    for cfg_name in names:
        cfg = CONFIGS[cfg_name]
        results = {}
        for kind in ('frame-by-frame', 'fast'):
            results[kind] = time_steps(kind, cfg, device, steps, args.warmup)
            rate, seconds, peak = results[kind]
            print(f'{cfg_name:<10}{kind:<16}{rate:>11.1f}{seconds:>10.3f}{peak:>10.2f}')
        print(f'{cfg_name:<10}{"speed-up":<16}{results["fast"][0] / results["frame-by-frame"][0]:>10.1f}x   '
              f'({", ".join(f"{k} {v}" for k, v in cfg.items())})')

    cfg = CONFIGS[names[-1]]
    pipeline = time_data_pipeline(device, cfg['frames'], cfg['batch'], args.workers)
    print(f'\ndata pipeline ({args.workers} workers, batch {cfg["batch"]}, {cfg["frames"]} frames): '
          f'views made in the workers {pipeline["loader"]:.0f} pairs/s, '
          f'on the {device.type} per batch {pipeline["device"]:.0f} pairs/s')
    train, test, dim = args.knn_size or ((40091, 16487, 2048) if device.type == 'cuda' else (4000, 1600, 2048))
    print(f'kNN (k = 1, 10, 20) of {test} x {train} features, {dim} dims: {time_knn(device, train, test, dim):.2f} s')


if __name__ == '__main__':
    main()
