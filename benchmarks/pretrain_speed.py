"""Pretraining step throughput: the fast GRU path against the frame-by-frame formulation.

    python benchmarks/pretrain_speed.py [--device cuda] [--config published|ci|both] [--steps N]

Times whole training steps (three modalities: forward, InfoNCE, CMD loss, backward, SGD step,
momentum update, enqueue) on random clips of the configured shape, for both formulations of the
same function, in one run. Prints samples/s, the ratio and peak memory.
"""
import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from feeder.layouts import NTU25  # noqa: E402
from models.cmd import CMD  # noqa: E402
from models.gru import GRUEncoder  # noqa: E402
from tests.reference import FrameByFrameGRUEncoder  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--config', default=None, choices=['published', 'ci', 'both'],
                        help='default: both on CUDA, ci on CPU')
    parser.add_argument('--steps', type=int, default=None, help='timed steps per measurement')
    parser.add_argument('--warmup', type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    config = args.config or ('both' if device.type == 'cuda' else 'ci')
    names = ['ci', 'published'] if config == 'both' else [config]
    steps = args.steps or (20 if device.type == 'cuda' else 3)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)'
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


if __name__ == '__main__':
    main()
