"""Each method's training step beside its published code's, at the same function and size: the
published step written out (``benchmarks/published_steps.py``) and ours (``pretrain.py``'s step,
``engine.train_step``) on the same starting weights and views, timed in turns in one run.

    python benchmarks/method_speed.py [--methods skeletonclr crossclr aimclr mamp] [--batch 16]
        [--frames 50] [--width 16] [--threads 1] [--steps 3] [--rounds 3] [--device cpu|cuda]

Before timing, one step of each side from the same state in float64 (dropout off) must give the same
loss: the two compute one function. Then, in float32 with the published dropout, ``--rounds`` turns
of ``--steps`` steps each, alternating; the table gives the median milliseconds per step and ours
over the published. ST-GCN methods: its published width 16 (``--width``), 50 frames; MAMP: the
published transformer (width 256, 8 blocks, 3 decoder blocks) on 120 frames (``--mamp-frames``).
On CUDA (``--device cuda``) a third side, ours captured as a CUDA graph (``--cuda-graph``), for the
methods whose step can be (not MAMP's: its lr changes at every step).
"""
import argparse
import copy
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.published_steps import (PublishedAimCLRStep, PublishedMAMPStep, PublishedMoCoStep,  # noqa: E402
                                        check_same_function)
from engine import train_step  # noqa: E402
from fast.settings import graph_problems  # noqa: E402
from fast.step import GraphedStep  # noqa: E402
from feeder.info import dataset_info  # noqa: E402
from feeder.layouts import NTU25  # noqa: E402
from models import METHODS, build_method  # noqa: E402
from models.stgcn import STGCNEncoder  # noqa: E402
from pretrain import get_pretrain_parser, resolve_settings  # noqa: E402
from utils.schedule import make_optimizer  # noqa: E402

TIMED = ('skeletonclr', 'crossclr', 'aimclr', 'mamp')
NTU60 = dataset_info('ntu60')


def published_settings(method, *flags):
    """What ``pretrain.py`` resolves for ``method`` on NTU-60 x-sub with ``flags``: its published recipe."""
    argv = ['--data-root', '.', '--output-dir', '.', '--dataset', 'ntu60', '--protocol', 'xsub', '--method', method]
    return resolve_settings(get_pretrain_parser().parse_args(argv + list(flags)), NTU60, torch.device('cpu'))[0]


def build(method, args, dropout):
    """Our model of ``method`` at the benchmark's size, its resolved settings, the published step
    class and the number of views."""
    if method == 'mamp':
        settings = published_settings(method, '--width', str(args.mamp_width), '--depth', str(args.mamp_depth))
        return build_method(settings, NTU60), settings, PublishedMAMPStep, 1
    settings = published_settings(method, '--queue-size', str(args.queue))

    def encoder():
        return STGCNEncoder(NTU25, base_channels=args.width, out_channels=16 * args.width, dim=settings.dim,
                            mlp=settings.mlp, dropout=dropout)
    published, views = {'crossclr': (PublishedMoCoStep, 2), 'skeletonclr': (PublishedMoCoStep, 2),
                        'aimclr': (PublishedAimCLRStep, 3)}[method]
    return METHODS[method].build(encoder, settings, NTU60), settings, published, views


def sides(model, settings, published_cls, graphed=False):
    """Copies of ``model`` and their steps, by name: the published one, ours (``engine.train_step``
    with the project's optimiser) and, with ``graphed``, ours captured as a CUDA graph
    (``fast.step.GraphedStep``, what ``--cuda-graph`` runs)."""
    cuda = next(model.parameters()).is_cuda
    theirs = copy.deepcopy(model).train()
    steps = {'published': published_cls(theirs, lr=settings.lr)}
    for name in ('ours', 'ours graphed') if graphed else ('ours',):
        ours = copy.deepcopy(model).train()
        optimizer = make_optimizer(ours.named_parameters(), settings, fused=cuda)
        scaler = torch.amp.GradScaler('cuda' if cuda else 'cpu', enabled=False)
        if name == 'ours graphed':
            steps[name] = functools.partial(lambda step, views: step(views)[0], GraphedStep(ours, optimizer, scaler))
        else:
            steps[name] = functools.partial(lambda m, o, s, views: train_step(m, o, s, views)[0], ours, optimizer,
                                            scaler)
    return steps


def clips(args, method, count, dtype):
    frames = args.mamp_frames if method == 'mamp' else args.frames
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(args.batch, 3, frames, 25, 2, generator=generator, dtype=dtype) for _ in range(count)]
    for view in views:
        view[::2, :, :, :, 1] = 0  # half the clips have one person, as in NTU
    return tuple(view.to(args.device) for view in views)


def seeded(step, views):
    """``step(views)`` after seeding the global generator (the masking's draws)."""
    torch.manual_seed(2)
    return step(views)


def measure(method, args):
    torch.manual_seed(0)
    model, settings, published_cls, count = build(method, args, dropout=0.0)
    steps = sides(model.double().to(args.device), settings, published_cls)
    error = check_same_function(functools.partial(seeded, steps['ours']), functools.partial(seeded, steps['published']),
                                clips(args, method, count, torch.float64))
    torch.manual_seed(0)
    model, settings, published_cls, count = build(method, args, dropout=0.5)
    graphed = args.device == 'cuda' and not graph_problems(vars(settings))
    steps = sides(model.to(args.device), settings, published_cls, graphed)
    views = clips(args, method, count, torch.float32)
    for step in steps.values():
        for _ in range(4):  # warm: the graphed step's three eager steps, then its capture
            step(views)
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(views)
            sync(args.device)
            times[name].append((time.perf_counter() - start) / args.steps * 1000)
    return {name: statistics.median(values) for name, values in times.items()}, error


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--methods', nargs='+', default=list(TIMED), choices=TIMED)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--frames', type=int, default=50)
    parser.add_argument('--width', type=int, default=16, help="the ST-GCN's first width (published 16)")
    parser.add_argument('--queue', type=int, default=32768)
    parser.add_argument('--mamp-frames', type=int, default=120)
    parser.add_argument('--mamp-width', type=int, default=256)
    parser.add_argument('--mamp-depth', type=int, default=8)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'],
                        help="cuda adds ours captured as a CUDA graph where the method's step can be; PyTorch's "
                             'default precision on both sides (TF32 convolutions, float32 matrix products)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device == 'cuda' else f'{args.threads} thread(s)'
    print(f'torch {torch.__version__}, {where}; batch {args.batch}, ST-GCN width {args.width} on '
          f'{args.frames} frames, MAMP width {args.mamp_width} x {args.mamp_depth} blocks on {args.mamp_frames} frames; '
          f'median of {args.rounds} turns of {args.steps} steps')
    print(f'{"method":<12} {"published ms":>13} {"ours ms":>9} {"ours/published":>15} {"graphed ms":>11} '
          f'{"graphed/published":>18} {"float64 loss gap":>17}')
    for method in args.methods:
        times, error = measure(method, args)
        published, graphed = times['published'], times.get('ours graphed')
        graph_ms, graph_ratio = ('', '') if graphed is None else (f'{graphed:.1f}', f'{graphed / published:.2f}')
        print(f'{method:<12} {published:>13.1f} {times["ours"]:>9.1f} {times["ours"] / published:>15.2f} '
              f'{graph_ms:>11} {graph_ratio:>18} {error:>17.2g}', flush=True)


if __name__ == '__main__':
    main()
