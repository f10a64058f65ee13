"""Training loops, kept apart from the set-up in the entry scripts: one pretraining epoch, and
the supervised loops of linear evaluation and fine-tuning."""
import contextlib
import math
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from feeder.modalities import to_modality
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


def _check_finite(first_bad, epoch, args):
    step = int(first_bad)
    if step >= 0:
        raise FloatingPointError(f'non-finite loss at epoch {epoch}, step {step}; stopping. '
                                 f'The last saved checkpoint in {args.output_dir} is intact.')


class TrainStep:
    """One optimisation step: forward (with the momentum update and enqueue inside the model),
    loss, backward, optimizer step.

    With ``graph=True`` (CUDA, one process) the whole step is captured once as a CUDA graph and
    replayed on every later batch: the frame-by-frame recurrence launches a few thousand small
    kernels per step, and replaying them as one graph removes the launch gaps between them. The
    first ``warmup`` steps run eagerly (lazy initialisation such as momentum buffers, cuBLAS
    handles and Triton compilation must not happen during capture); the graph is captured again
    whenever the learning rate changes, because the optimizer reads it as a Python number.
    """

    def __init__(self, model, optimizer, scaler, args, graph=False, warmup=3):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.amp, self.amp_dtype = args.amp, getattr(torch, args.amp_dtype)
        self.graph_enabled, self.warmup, self.warmed = graph, warmup, 0
        self.graph = self.static = self.lr = None

    def _run(self, view_q, view_k):
        # the autocast weight cache must stay off during capture (its casts would be replayed stale)
        with torch.autocast(view_q.device.type, dtype=self.amp_dtype, enabled=self.amp,
                            cache_enabled=not self.graph_enabled):
            loss, stats = self.model(view_q, view_k)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), {k: v for k, v in stats.items() if not k.startswith('logits_')}

    def __call__(self, view_q, view_k):
        if not self.graph_enabled:
            return self._run(view_q, view_k)
        if self.warmed < self.warmup:
            self.warmed += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self._run(view_q, view_k)
            torch.cuda.current_stream().wait_stream(side)
            return out
        lr = [group['lr'] for group in self.optimizer.param_groups]
        if self.graph is None or lr != self.lr or view_q.shape != self.static[0].shape:
            self._capture(view_q, view_k, lr)
        self.static[0].copy_(view_q)
        self.static[1].copy_(view_k)
        self.graph.replay()
        return self.static[2]

    def _capture(self, view_q, view_k, lr):
        self.graph = self.static = None
        torch.cuda.synchronize()
        views = view_q.clone(), view_k.clone()
        graph = torch.cuda.CUDAGraph()
        # thread-local capture: the data loader's pin-memory thread keeps calling CUDA meanwhile
        with torch.cuda.graph(graph, capture_error_mode='thread_local'):
            out = self._run(*views)
        self.graph, self.static, self.lr = graph, (*views, out), lr


def prefetch_views(loader, device, augment=None):
    """The loader's pairs on ``device`` (with ``augment``: the two views made from its raw clips).

    On CUDA each batch is copied and augmented one step ahead on a second stream, so that work
    runs beside the previous training step instead of queueing in front of the next one.
    Elsewhere the batches are prepared in turn. Random draws happen in the same order either way.
    """
    stream = torch.cuda.Stream(device) if device.type == 'cuda' else None

    def prepare(first, second):
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            first = first.to(device, non_blocking=True)
            second = second.to(device, non_blocking=True)
            return (first, second) if augment is None else augment(first, second)

    ready = None
    for first, second in loader:
        upcoming = prepare(first, second)
        if ready is not None:
            yield ready
        if stream is not None:
            torch.cuda.current_stream(device).wait_stream(stream)
            for view in upcoming:  # made on the side stream, used on the main one
                view.record_stream(torch.cuda.current_stream(device))
        ready = upcoming
    if ready is not None:
        yield ready


def train_one_epoch(model, loader, step_fn, device, epoch, args, augment=None):
    """Returns the epoch means of the losses and contrastive accuracies (over all ranks).

    ``step_fn`` is a :class:`TrainStep`. With ``augment`` (a :class:`feeder.datasets.PairAugment`)
    the loader yields raw clips and their lengths, and both views are made here, on ``device``,
    for the whole batch at once.
    """
    model.train()
    sums, steps, samples = {}, 0, 0
    # The step that first gave a non-finite loss, kept on the device: the host looks only every
    # ``print_freq`` steps, so the GPU is not stalled by a check on every step.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    start = time.perf_counter()
    batches = prefetch_views(loader, device, augment)
    bar = tqdm(batches, total=len(loader), desc=f'epoch {epoch}', disable=not is_main_process() or args.quiet,
               leave=False)
    for step, (view_q, view_k) in enumerate(bar):
        loss, stats = step_fn(view_q, view_k)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        # a graphed step returns the same tensors every time: accumulate copies, before the next replay
        for key, value in {**stats, 'loss': loss}.items():
            sums[key] = sums.get(key, 0) + value.float()
        steps += 1
        samples += len(view_q) * args.world_size
        if step % args.print_freq == 0 or step + 1 == len(loader):
            _check_finite(first_bad, epoch, args)
            bar.set_postfix(loss=f'{loss.item():.3f}', samples_per_s=f'{samples / (time.perf_counter() - start):.0f}')
    _check_finite(first_bad, epoch, args)
    keys = sorted(sums)
    means = torch.stack([sums[k] for k in keys]) / max(steps, 1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(means)
        means /= dist.get_world_size()
    out = dict(zip(keys, means.tolist()))
    out['samples_per_s'] = samples / (time.perf_counter() - start)
    return out


class Classifier(torch.nn.Module):
    """An encoder (its features, not its ``fc``) and a new linear head for one stream."""

    def __init__(self, encoder, num_classes, stream, layout):
        super().__init__()
        self.encoder, self.stream, self.layout = encoder, stream, layout
        self.head = torch.nn.Linear(encoder.feature_dim, num_classes)
        torch.nn.init.normal_(self.head.weight, std=0.01)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.encoder.features(to_modality(x, self.stream, self.layout)))


def train_classifiers_one_epoch(classifiers, loader, optimizer, device, frozen, quiet=False, epoch=0):
    """One epoch for every stream's classifier on the same clips; frozen encoders stay in eval
    mode so their BatchNorm statistics are never touched."""
    for classifier in classifiers.values():
        classifier.train()
        if frozen:
            classifier.encoder.eval()
    total, steps = 0.0, 0
    for x, y in tqdm(loader, desc=f'epoch {epoch}', disable=quiet, leave=False):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = sum(F.cross_entropy(c(x), y) for c in classifiers.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss ({loss.item()}) at epoch {epoch}, step {steps}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        steps += 1
    return total / max(steps, 1)


@torch.no_grad()
def evaluate_classifiers(classifiers, loader, device):
    """Top-1/top-5 (%) per stream and, for several streams, of the sum of their softmax scores."""
    scores = {s: [] for s in classifiers}
    labels = []
    for classifier in classifiers.values():
        classifier.eval()
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        for stream, classifier in classifiers.items():
            scores[stream].append(classifier(x).softmax(dim=1))
        labels.append(y.to(device))
    labels = torch.cat(labels)
    scores = {s: torch.cat(v) for s, v in scores.items()}
    if len(scores) > 1:
        scores['fused'] = sum(scores.values())
    out = {}
    for name, score in scores.items():
        top5 = score.topk(min(5, score.shape[1]), dim=1).indices
        out[name] = {'top1': (top5[:, 0] == labels).float().mean().item() * 100,
                     'top5': (top5 == labels[:, None]).any(dim=1).float().mean().item() * 100}
    return out


def fit_classifiers(classifiers, train_loader, test_loader, args, device, frozen):
    """SGD with step decay; returns the per-epoch history. The result is the last epoch's."""
    params = [p for c in classifiers.values() for p in c.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    history = []
    for epoch in range(args.epochs):
        lr = adjust_learning_rate(optimizer, epoch, args)
        loss = train_classifiers_one_epoch(classifiers, train_loader, optimizer, device, frozen, args.quiet, epoch)
        record = {'epoch': epoch, 'lr': lr, 'train_loss': loss}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            record['test'] = evaluate_classifiers(classifiers, test_loader, device)
            shown = ', '.join(f'{s} {v["top1"]:.2f}' for s, v in record['test'].items())
            print(f'epoch {epoch}: loss {loss:.4f}, test top-1 {shown}')
        history.append(record)
    return history


def summarise(history):
    """Last epoch's accuracies (the result) and, labelled apart, the best test epoch per stream."""
    evaluated = [r for r in history if 'test' in r]
    last = evaluated[-1]['test']
    best = {s: max(({'top1': r['test'][s]['top1'], 'epoch': r['epoch']} for r in evaluated),
                   key=lambda b: b['top1']) for s in last}
    return last, best
