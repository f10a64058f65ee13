"""The fast path's self-check (docs/fast-path.md) at the published recipe, on this machine, without
data: what every fast run does before its first step, and how long it takes.

    python benchmarks/self_check.py [--runs ''  ' --amp'  ' --gru-kernels triton-frame']

Each run builds the published NTU-60 x-sub model (or another, with the pretraining flags given in
its string: ' --gru-impl grouped --hidden-size 64' checks the grouped recurrence on a CPU), makes one batch of views from random-walk clips, and prints the self-check's
line: passed or failed, the largest relative difference, the tolerance and the seconds.
"""
import argparse
import os
import platform
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import pretrain  # noqa: E402
from fast.self_check import check_before_run  # noqa: E402
from feeder.info import MAX_FRAMES, dataset_info  # noqa: E402
from options.args import settle_device  # noqa: E402
from utils.rng import seed_everything  # noqa: E402


def check(extra):
    args = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ntu60', '--data-root', 'unused', '--output-dir',
                                                      'unused', *shlex.split(extra)])
    dataset = dataset_info(args.dataset)
    args, speed = pretrain.resolve_settings(args, dataset, settle_device(args.device))
    if not speed.computes_differently:
        return f'{extra or "defaults"}: the reference code computes this run; nothing to check'
    device = torch.device(args.device)
    speed.set_matmul_precision()
    seed_everything(args.seed)
    model, optimizer, scaler = pretrain.build_training(args, dataset, speed, device)
    augment = pretrain.views_of(args, dataset)
    shape = (args.batch_size, len(dataset.channels), MAX_FRAMES, dataset.layout.num_joints, dataset.persons)
    clips = torch.randn(shape).cumsum(dim=2) * 0.02  # smooth random walks, like moving joints
    lengths = torch.randint(MAX_FRAMES // 2, MAX_FRAMES + 1, (args.batch_size,))
    views = augment(clips.to(device), lengths.to(device))
    print(f'{extra or "defaults"}: ', end='', flush=True)
    check_before_run(model, optimizer, scaler, speed, args, views, lambda: pretrain.build_method(args, dataset).to(device),
                     lambda a, s: pretrain.build_training(a, dataset, s, device), pretrain.optimizer_for)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', nargs='*', default=[''], metavar='ARGS',
                        help="pretrain.py's extra arguments, one quoted string per run, each starting with a space "
                             "so that it is not read as an option here (default: one run with the defaults)")
    args = parser.parse_args()
    name = (torch.cuda.get_device_name() if torch.cuda.is_available() else
            f'CPU ({platform.machine()}, {os.cpu_count()} cores)')
    print(f'device: {name}; torch {torch.__version__}')
    for extra in args.runs:
        said = check(extra.strip())
        if said:
            print(said)


if __name__ == '__main__':
    main()
