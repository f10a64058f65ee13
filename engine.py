"""The pretraining loop: one optimisation step, the batches' views on the training device, one
epoch, and the run's epochs with their checkpoints and logs. The entry script ``pretrain.py`` does
the set-up; :mod:`fast.step` computes the same step and views faster on CUDA."""
import contextlib
import json
import math
import os
import time

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from feeder.datasets import collate_clips
from utils import run_folder
from utils.checkpoint_io import BackgroundSaver, run_state
from utils.dist import RankStopped, RankWatch, is_main_process, world_size
from utils.io import WriteError, append_jsonl, write_text_atomic
from utils.run import plain
from utils.schedule import adjust_learning_rate, per_step_schedule


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


def first_views(clips, augment, on_device, device, batch_size):
    """The views of the first clips, one batch, as the training loop would make them."""
    batch = [clips[i] for i in range(batch_size)]
    return to_views((collate_clips if on_device else torch.utils.data.default_collate)(batch), device,
                    augment if on_device else None)


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


@contextlib.contextmanager
def stopped_in_one_line(saver, args):
    """The training loop's faults as one line each, the last checkpoint written (``saver``'s) named:
    a file that cannot be written, and under torchrun a rank that died (:class:`utils.dist.RankWatch`)."""
    watch = RankWatch()
    try:
        with watch():
            yield
        saver.wait()
    except WriteError as e:
        raise WriteError(f'{e}. The checkpoint written before is as it was ({saver.written or args.resume or "none"}); '
                         'make room and continue with --auto-resume') from None
    except (RankStopped, RuntimeError) as e:
        if not args.distributed or not (isinstance(e, RankStopped) or watch.collective_error(e)):
            raise
        saver.wait()
        raise SystemExit(f'error: {watch.explain(e)}; stopped. The last checkpoint, '
                         f'{saver.written or args.resume or "none yet"}, is intact: continue with --auto-resume')
    finally:
        saver.wait()


def pretrain_epochs(model, optimizer, scaler, speed, loader, sampler, augment, monitor, args, dataset, start_epoch,
                    last_record=None):
    """The run's epochs from ``start_epoch`` on, each followed by its checkpoint and log line
    (rank 0; docs/pretraining.md, "A run's folder"): ``augment`` makes the views on the device
    where given (else the loader makes them), ``monitor`` is the kNN monitor, ``last_record`` the
    log line the resumed checkpoint holds."""
    base = model.module if args.distributed else model
    writer, log = None, os.path.join(args.output_dir, 'log.txt')
    if is_main_process():
        os.makedirs(args.output_dir, exist_ok=True)
        if start_epoch:
            run_folder.reconcile_log(args.output_dir, start_epoch, last_record)
        write_text_atomic(os.path.join(args.output_dir, 'args.json'),
                          json.dumps(plain(dict(vars(args), sources=args.sources)), indent=1))
        # purge_step: TensorBoard drops points of epochs from start_epoch on, left by a run resumed here
        writer = SummaryWriter(log_dir=os.path.join(args.output_dir, 'tensorboard'), purge_step=start_epoch or None)
    step, views = speed.step(model, optimizer, scaler), speed.views()
    saver, guard = BackgroundSaver(), DivergenceGuard(base)
    # the run's minutes so far, across resumes (a checkpoint that predates the count starts it at 0)
    minutes = (last_record or {}).get('minutes', 0.0) if start_epoch else 0.0
    with stopped_in_one_line(saver, args):
        for epoch in range(start_epoch, args.epochs):
            started = time.perf_counter()
            if sampler is not None:
                sampler.set_epoch(epoch)
            base.set_epoch(epoch)
            lr = adjust_learning_rate(optimizer, epoch, args)
            stats = train_one_epoch(model, views(loader, loader_device(model), augment), len(loader), step, epoch,
                                    args, per_step_schedule(optimizer, epoch, len(loader), args))
            stats['lr'] = lr
            saver.wait()
            guard.check(epoch, saver.written or args.resume)
            if monitor.due(epoch):
                stats.update(monitor(base.encoders()))
            minutes = stats['minutes'] = minutes + (time.perf_counter() - started) / 60
            if is_main_process():
                record = {'epoch': epoch, **stats}
                state = run_state(base, optimizer, scaler, epoch + 1, args, dataset, record)
                # the snapshot before checkpoint.pth: a kill between the two redoes the epoch and both
                paths = [os.path.join(args.output_dir, run_folder.LATEST)]
                if epoch % args.save_every == 0 or epoch + 1 == args.epochs:
                    paths.insert(0, os.path.join(args.output_dir, f'checkpoint_{epoch:04d}.pth'))
                saver.save(state, paths, then=lambda record=record: append_jsonl(log, record))
                for key, value in stats.items():
                    writer.add_scalar(f'pretrain/{key}', value, epoch)
                writer.flush()
                print(f'epoch {epoch}: {", ".join(f"{k} {v:.4g}" for k, v in stats.items())}')
    if writer is not None:
        writer.close()


def loader_device(model):
    """The device the model trains on, where the batches go."""
    return next(model.parameters()).device
