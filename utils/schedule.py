"""The optimiser and learning-rate schedule shared by pretraining and the supervised protocols."""
import math

import torch

# AdamW's betas as MAE and MAMP pretrain with them (a run's --betas, where it has one, wins)
ADAMW_BETAS = (0.9, 0.95)


def make_optimizer(named_parameters, args, lr_scales=None, **options):
    """``--optimizer`` over the trainable ``named_parameters``: SGD with ``--momentum`` and
    ``--weight-decay`` on every parameter (the published CMD recipe), or AdamW with
    ``--betas`` (default :data:`ADAMW_BETAS`) and ``--weight-decay`` on all but the 1-D parameters
    (biases, norms).
    ``lr_scales``: {name: factor} for layer-wise lr decay (each group's ``lr_scale``, applied by
    :func:`adjust_learning_rate`); ``options``: the optimiser's own (``fused``)."""
    groups = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        decay = args.weight_decay if args.optimizer == 'sgd' or param.ndim > 1 else 0.0
        scale = (lr_scales or {}).get(name, 1.0)
        groups.setdefault((decay, scale), []).append(param)
    groups = [{'params': params, 'weight_decay': decay, 'lr_scale': scale}
              for (decay, scale), params in groups.items()]
    if args.optimizer == 'adamw':
        betas = tuple(getattr(args, 'betas', None) or ADAMW_BETAS)
        return torch.optim.AdamW(groups, lr=args.lr, betas=betas, **options)
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, **options)


def learning_rate(epoch, args):
    """The lr at ``epoch`` (fractional within an epoch): a linear warm-up from 0 over
    ``--warmup-epochs``, then step decay (x0.1 at each epoch in ``--schedule``) or, with ``--cos``,
    cosine decay from ``--lr`` to ``--min-lr`` over the remaining epochs."""
    warmup = getattr(args, 'warmup_epochs', 0) or 0
    if epoch < warmup:
        return args.lr * epoch / warmup
    if args.cos:
        low = getattr(args, 'min_lr', 0.0) or 0.0
        return low + (args.lr - low) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (args.epochs - warmup)))
    return args.lr * 0.1 ** sum(epoch >= milestone for milestone in args.schedule)


def adjust_learning_rate(optimizer, epoch, args):
    """Set every group's lr to :func:`learning_rate` times its ``lr_scale``; returns the lr."""
    lr = learning_rate(epoch, args)
    for group in optimizer.param_groups:
        group['lr'] = lr * group.get('lr_scale', 1.0)
    return lr


def per_step_schedule(optimizer, epoch, steps, args):
    """With a warm-up or cosine decay, ``before_step(i)`` setting the lr of step ``i`` of ``epoch``'s
    ``steps`` (MAE's and MAMP's schedule); else ``None``: the lr set once per epoch stands."""
    if not (args.warmup_epochs or args.cos):
        return None
    return lambda i: adjust_learning_rate(optimizer, epoch + i / steps, args)
