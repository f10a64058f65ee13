"""Semi-supervised fine-tuning and transfer (docs/protocols.md).

    python finetune.py --checkpoint CKPT --dataset ntu60 --protocol xsub --data-root DATA --output-dir OUT \\
        [--label-fraction 0.01|0.05|0.1|0.2|1.0] [--repeats 5] [--seed S]

A class-balanced random subset of the training labels (every class keeps at least one clip) is
used to fine-tune the whole network in train mode with a new linear head (``--stream all``:
every stream's, their softmax scores summed). ``--repeats`` runs several seeds (each its own
subset, head, clip order and augmentations; ``random`` is one encoder for all) and reports mean
and standard deviation of the last epoch's top-1. Transfer is the same command with a checkpoint
pretrained on another dataset (of another skeleton too: docs/protocols.md, "Across datasets").
``--checkpoint random`` trains the network from scratch; ``--checkpoint raw`` trains a linear
head on the prepared coordinates (there is no encoder), the baseline of the few-labels table.
Writes ``OUT/results.json`` and the first repeat's model, ``OUT/heads.pth`` (``predict.py``,
``export.py``).
"""
import argparse
import os
import statistics

import numpy as np

from evaluation.classifier import Classifier, fit_classifiers, summarise
from evaluation.common import setup_evaluation
from evaluation.heads import heads_record, save_heads
from evaluation.report import class_report, save_confusion
from evaluation.results import save_results
from feeder.modalities import FUSED
from options.args import (add_report_arguments, get_args_parser, get_eval_parser, get_supervised_parser,
                          positive_int, show_defaults)
from models import HEADS
from options.presets import FINETUNE
from utils.rng import seed_everything
from utils.run import run_cli


def get_finetune_parser():
    parser = argparse.ArgumentParser('CMD fine-tuning', description=__doc__,
                                     parents=[get_args_parser(), get_eval_parser(fusion='all'),
                                              get_supervised_parser()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--label-fraction', type=float, default=1.0, help='share of training labels used')
    parser.add_argument('--repeats', type=positive_int, default=1, help='runs with seeds seed, seed+1, ...')
    parser.add_argument('--layer-decay', type=float, default=None,
                        help="layer-wise lr decay: the encoder's layer i of L (the transformer's: embeddings 0, "
                             'blocks 1 to depth, then the final norm) learns at lr x D^(L - i), the head at lr '
                             '(MAMP: 0.8); 1 turns it off')
    parser.add_argument('--head', default=None, choices=['linear', *HEADS],
                        help="linear: one layer on the pooled features; mamp: MAMP's fine-tuning head on the "
                             "transformer's token grid (dropout 0.3, mean over time, joints side by side, mean over "
                             'persons, Linear 2048, BatchNorm, ReLU, Linear)')
    parser.add_argument('--drop-path', type=float, default=None,
                        help="the transformer's stochastic depth while fine-tuning: block b of L drops its branches "
                             'with probability R b / (L - 1) (MAMP: 0.3)')
    parser.add_argument('--label-smoothing', type=float, default=None, help='of the cross-entropy (MAMP: 0.1)')
    add_report_arguments(parser)
    show_defaults(parser, lambda dataset: FINETUNE)
    return parser


def balanced_subset(labels, fraction, seed):
    """Indices of a class-balanced random subset: ``max(1, round(fraction * n_c))`` per class."""
    if not 0 < fraction <= 1:
        raise ValueError(f'--label-fraction must be in (0, 1], got {fraction}')
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def layer_scales(classifier, stream, decay):
    """{parameter name: lr factor} of layer-wise decay for one stream's classifier (names as
    :func:`evaluation.classifier.fit_classifiers` gives them)."""
    encoder = classifier.encoder
    if not hasattr(encoder, 'layer_of'):
        raise SystemExit(f'error: --layer-decay {decay:g}: the {type(encoder).__name__} does not number its layers; '
                         'it applies to --encoder transformer')
    return {f'{stream}.encoder.{name}': decay ** (encoder.decay_layers - encoder.layer_of(name))
            for name, _ in encoder.named_parameters()}


def main(args):
    run = setup_evaluation(args, FINETUNE, protocol='finetune')
    args = run.args
    labels = run.folder('train').labels
    runs = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        subset = balanced_subset(labels, args.label_fraction, seed)
        encoders, info, _ = run.load_encoders()
        # after loading, which seeds a random encoder the same way for every use (from scratch starts
        # from one encoder): the head, the clips' order and their augmentations are the repeat's own
        seed_everything(seed)
        classifiers = {s: Classifier(encoders[s], run.dataset.num_classes, head=args.head).to(run.device)
                       for s in run.streams}
        for classifier in classifiers.values() if args.drop_path else ():
            if not hasattr(classifier.encoder, 'set_drop_path'):
                raise SystemExit(f'error: --drop-path {args.drop_path:g}: the {type(classifier.encoder).__name__} has '
                                 'no blocks to drop; it applies to --encoder transformer')
            classifier.encoder.set_drop_path(args.drop_path)
        train_loader, test_loader, args = run.supervised_loaders(info['frames'], subset, few_labels=True)
        print(f'run {repeat + 1}/{args.repeats}: seed {seed}, {len(subset)} labelled clips of {len(labels)}')
        scales = ({k: v for s, c in classifiers.items() for k, v in layer_scales(c, s, args.layer_decay).items()}
                  if args.layer_decay != 1 else None)
        history, tested = fit_classifiers(classifiers, train_loader, test_loader, args, run.device, frozen=False,
                                          lr_scales=scales)
        last, best = summarise(history)
        if repeat == 0:  # the first repeat's model is the one kept, and reported per class
            report = class_report(*tested, run.dataset)
            save_heads(os.path.join(args.output_dir, 'heads.pth'),
                       heads_record('finetune', classifiers, args, run.dataset, info))
        result = FUSED if len(classifiers) > 1 else run.streams[0]
        runs.append({'seed': seed, 'labelled': len(subset), 'accuracy': last[result], 'streams': last,
                     'best_test_epoch_for_reference': best[result], 'history': history})
    top1 = [r['accuracy']['top1'] for r in runs]
    summary = {'top1_mean': statistics.mean(top1), 'top1_std': statistics.stdev(top1) if len(top1) > 1 else 0.0,
               'top5_mean': statistics.mean(r['accuracy']['top5'] for r in runs)}
    print(f'\nFine-tuning on {args.dataset} {args.protocol}, {args.label_fraction:g} of the labels, '
          f'{args.repeats} run(s), last epoch: top-1 {summary["top1_mean"]:.2f} +- {summary["top1_std"]:.2f}')
    results = save_results(os.path.join(args.output_dir, 'results.json'), 'finetune', args, info, run.streams,
                           ('label_fraction', 'repeats', 'seed', 'epochs', 'optimizer', 'lr', 'schedule', 'cos',
                            'min_lr', 'warmup_epochs', 'layer_decay', 'momentum', 'betas', 'weight_decay', 'batch_size',
                            'head', 'drop_path', 'label_smoothing', 'whole_clips', 'rotate_train'),
                           accuracy=summary, **report, runs=runs)
    save_confusion(report, args.plot_confusion, f'{args.dataset} {args.protocol} val, fine-tuned')
    return results


if __name__ == '__main__':
    run_cli(main, get_finetune_parser())
