"""The pretraining loop: one optimisation step, the batches' views on the training device, and
one epoch. The entry script ``pretrain.py`` does the set-up; :mod:`fast.step` computes the same
step and views faster on CUDA."""
import math
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

from utils.dist import is_main_process, world_size


def train_step(model, optimizer, scaler, views, amp=False, amp_dtype=torch.bfloat16, autocast_cache=True):
    """Forward on the batch's ``views`` (the model updates its key encoders and queues inside),
    loss, backward and optimizer step; returns the detached loss and the model's statistics."""
    with torch.autocast(views[0].device.type, dtype=amp_dtype, enabled=amp, cache_enabled=autocast_cache):
        loss, stats = model(views)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), stats


def to_views(batch, device, augment=None):
    """One batch on ``device``: its views, or with ``augment`` (a
    :class:`feeder.augment.ViewAugment`) the views made from its raw clips and their lengths."""
    batch = [x.to(device, non_blocking=True) for x in batch]
    return tuple(batch) if augment is None else augment(*batch)


def device_views(loader, device, augment=None):
    """The loader's batches as tuples of views on ``device``, one after the other."""
    for batch in loader:
        yield to_views(batch, device, augment)


def _check_finite(first_bad, epoch, args):
    step = int(first_bad)
    if step >= 0:
        raise FloatingPointError(f'non-finite loss at epoch {epoch}, step {step}; stopping. '
                                 f'The last saved checkpoint in {args.output_dir} is intact.')


def train_one_epoch(model, batches, steps_per_epoch, step_fn, epoch, args, before_step=None):
    """Runs ``step_fn`` on every tuple of views in ``batches``, ``model`` in train mode (and
    ``before_step(i)`` before step ``i``, where given); returns the epoch means of the losses and
    contrastive accuracies (over all ranks) and the samples per second."""
    model.train()
    sums, steps, samples, first_bad = {}, 0, 0, None
    start = time.perf_counter()
    bar = tqdm(batches, total=steps_per_epoch, desc=f'epoch {epoch}', disable=not is_main_process() or args.quiet,
               leave=False)
    for step, views in enumerate(bar):
        if before_step is not None:
            before_step(step)
        loss, stats = step_fn(views)
        # The step that first gave a non-finite loss, kept on the device: the host looks only every
        # ``print_freq`` steps, so the GPU is not stalled by a check on every step.
        if first_bad is None:
            first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        # a graphed step returns the same tensors every time: accumulate copies, before the next replay
        for key, value in {**stats, 'loss': loss}.items():
            sums[key] = sums.get(key, 0) + value.float()
        steps += 1
        samples += len(views[0]) * args.world_size
        if step % args.print_freq == 0 or step + 1 == steps_per_epoch:
            _check_finite(first_bad, epoch, args)
            bar.set_postfix(loss=f'{loss.item():.3f}', samples_per_s=f'{samples / (time.perf_counter() - start):.0f}')
    if first_bad is not None:
        _check_finite(first_bad, epoch, args)
    keys = sorted(sums)
    means = torch.stack([sums[k] for k in keys]) / max(steps, 1)
    if world_size() > 1:
        dist.all_reduce(means)
        means /= world_size()
    out = dict(zip(keys, means.tolist()))
    out['samples_per_s'] = samples / (time.perf_counter() - start)
    return out


# A parameter norm that grows by this factor or more within one epoch means the run diverged.
DIVERGENCE_FACTOR = 100


class DivergenceGuard:
    """Stops a run at the first epoch whose trainable parameters are non-finite or whose norm
    grew ``DIVERGENCE_FACTOR``-fold over the previous epoch's, before that epoch is saved: an
    exploded model can still give finite losses (its InfoNCE stuck at log(K + 1)) for a while."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.norm = self._norm()

    def _norm(self):
        with torch.no_grad():
            return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.float())
                                                               for p in self.params])))

    def check(self, epoch, last_checkpoint):
        norm = self._norm()
        if math.isfinite(norm) and norm < DIVERGENCE_FACTOR * self.norm:
            self.norm = norm
            return
        what = ('non-finite' if not math.isfinite(norm) else
                f'{norm:.3g}, {norm / self.norm:.3g} times the previous epoch\'s {self.norm:.3g}')
        raise FloatingPointError(f'the parameters diverged at epoch {epoch} (norm {what}); stopping before saving '
                                 f'it. The last checkpoint written before: {last_checkpoint or "none"}')
