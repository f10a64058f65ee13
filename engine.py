"""One pretraining epoch, kept apart from the set-up in ``pretrain.py``."""
import math
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

from utils.misc import is_main_process


def adjust_learning_rate(optimizer, epoch, args):
    """Step decay (x0.1 at each epoch in ``--schedule``) or, with ``--cos``, cosine decay."""
    lr = args.lr
    if args.cos:
        lr *= 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    else:
        lr *= 0.1 ** sum(epoch >= milestone for milestone in args.schedule)
    for group in optimizer.param_groups:
        group['lr'] = lr
    return lr


def train_one_epoch(model, loader, optimizer, scaler, device, epoch, args):
    """Returns the epoch means of the losses and contrastive accuracies (over all ranks)."""
    model.train()
    sums, steps, samples = {}, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f'epoch {epoch}', disable=not is_main_process() or args.quiet, leave=False)
    for step, (view_q, view_k) in enumerate(bar):
        view_q = view_q.to(device, non_blocking=True)
        view_k = view_k.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
            loss, stats = model(view_q, view_k)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f'non-finite loss ({loss.item()}) at epoch {epoch}, step {step}; stopping. '
                f'The last saved checkpoint in {args.output_dir} is intact.')
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        stats = {k: v for k, v in stats.items() if not k.startswith('logits_')}
        stats['loss'] = loss.detach()
        for key, value in stats.items():
            sums[key] = sums.get(key, 0) + value.float()
        steps += 1
        samples += len(view_q) * args.world_size
        bar.set_postfix(loss=f'{loss.item():.3f}', samples_per_s=f'{samples / (time.perf_counter() - start):.0f}')
    keys = sorted(sums)
    means = torch.stack([sums[k] for k in keys]) / max(steps, 1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(means)
        means /= dist.get_world_size()
    out = dict(zip(keys, means.tolist()))
    out['samples_per_s'] = samples / (time.perf_counter() - start)
    return out
