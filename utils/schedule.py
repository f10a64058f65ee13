"""The learning-rate schedule shared by pretraining and the supervised protocols."""
import math


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
