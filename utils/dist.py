"""Distributed set-up and rank-0-only output."""
import builtins
import datetime
import os

import torch
import torch.distributed as dist


def init_distributed(args):
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    args.distributed = int(os.environ.get('WORLD_SIZE', 1)) > 1
    args.rank, args.world_size, args.local_rank = 0, 1, 0
    if not args.distributed:
        return
    args.rank, args.world_size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    args.local_rank = int(os.environ.get('LOCAL_RANK', 0))
    backend = 'nccl' if args.device == 'cuda' else 'gloo'
    if args.device == 'cuda':
        torch.cuda.set_device(args.local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    dist.barrier()
    setup_for_distributed(args.rank == 0)


def setup_for_distributed(is_main):
    """Silence ``print`` on every rank but 0 (``print(..., force=True)`` still prints)."""
    builtin_print = builtins.print

    def print(*args, **kwargs):
        if kwargs.pop('force', False) or is_main:
            builtin_print(*args, **kwargs)
    builtins.print = print


def initialized():
    """Whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if initialized() else 1


def rank():
    return dist.get_rank() if initialized() else 0


def barrier():
    if initialized():
        dist.barrier()


def is_main_process():
    return rank() == 0


@torch.no_grad()
def concat_all_gather(tensor, dim=0):
    """Concatenate ``tensor`` from every rank along ``dim`` (identity without a process group)."""
    if world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=dim)
