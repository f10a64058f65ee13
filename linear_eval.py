"""Linear evaluation of frozen pretrained encoders (docs/protocols.md).

    python linear_eval.py --checkpoint CKPT --dataset ntu60 --protocol xsub --data-root DATA --output-dir OUT [--stream all]

The encoder is loaded from the checkpoint, frozen and kept in eval mode (BatchNorm statistics
untouched); only a new linear head is trained (``--batchnorm``: after a BatchNorm without
affine parameters), with the published recipe as defaults. The result
is the last epoch's top-1/top-5; the best test epoch is printed only labelled as such, for
comparison with published numbers that report it. ``--stream all`` trains the three streams'
heads together and adds their fusion (sum of softmax scores). Writes ``OUT/results.json`` and the
classifier, ``OUT/heads.pth``, which ``predict.py`` and ``export.py`` read.
"""
import argparse
import os

import torch

from evaluation.classifier import FUSIONS, Classifier, fit_classifiers, summarise
from evaluation.common import setup_evaluation
from evaluation.heads import heads_record, save_heads
from evaluation.report import class_report, save_confusion
from evaluation.results import save_results
from options.args import add_report_arguments, get_args_parser, get_eval_parser, get_supervised_parser, show_defaults
from options.presets import LINEAR
from utils.rng import seed_everything
from utils.run import run_cli


def get_linear_parser():
    parser = argparse.ArgumentParser('CMD linear evaluation', description=__doc__,
                                     parents=[get_args_parser(), get_eval_parser(), get_supervised_parser()],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batchnorm', default=None, action=argparse.BooleanOptionalAction,
                        help='a BatchNorm without affine parameters (eps 1e-6) before each linear head (the probe of '
                             'MAE and MAMP, whose transformer features differ in scale by channel)')
    parser.add_argument('--fusion', default=None, choices=FUSIONS,
                        help="--stream all: softmax, the sum of the separately trained heads' softmax scores; "
                             "logits-mean, one loss on the mean of the heads' logits, trained together (CrosSCLR); "
                             'logits-weighted, the logits summed with --fusion-weights (AimCLR: 0.6 0.4 0.6)')
    parser.add_argument('--fusion-weights', type=float, nargs=3, default=None, metavar=('JOINT', 'MOTION', 'BONE'),
                        help='the weight of each stream in --fusion logits-weighted')
    add_report_arguments(parser)
    show_defaults(parser, lambda dataset: LINEAR)
    return parser


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def main(args):
    run = setup_evaluation(args, LINEAR, protocol='linear')
    args = run.args
    seed_everything(args.seed)
    encoders, info, report = run.load_encoders()
    for stream, loaded in report.items():
        assert not loaded['missing'], f'{stream}: encoder keys missing from the checkpoint: {loaded["missing"]}'
        print(f'{stream}: loaded {len(loaded["loaded"])} encoder tensors ({info["kind"]})')

    classifiers = {}
    for stream, encoder in encoders.items():
        for param in encoder.parameters():
            param.requires_grad = False
        classifiers[stream] = Classifier(encoder, run.dataset.num_classes, args.batchnorm).to(run.device)
    trainable = sum(p.numel() for c in classifiers.values() for p in c.parameters() if p.requires_grad)
    heads = sum(c.head.weight.numel() + c.head.bias.numel() for c in classifiers.values())
    assert trainable == heads, f'{trainable} trainable parameters, but the linear heads hold {heads}'
    print(f'trainable parameters: {trainable:,} (linear heads only)')
    before = {s: snapshot(c.encoder) for s, c in classifiers.items()}

    train_loader, test_loader, args = run.supervised_loaders(info['frames'])
    history, (predictions, labels) = fit_classifiers(classifiers, train_loader, test_loader, args, run.device,
                                                     frozen=True)

    for stream, classifier in classifiers.items():
        after = snapshot(classifier.encoder)
        changed = [k for k, v in before[stream].items() if not torch.equal(v, after[k])]
        assert not changed, f'{stream}: the frozen encoder changed during linear evaluation: {changed}'
    last, best = summarise(history)
    print(f'\nLinear evaluation on {args.dataset} {args.protocol} ({info["kind"]} encoder), last epoch:')
    for name, acc in last.items():
        print(f'  {name:>8}: top-1 {acc["top1"]:.2f}  top-5 {acc["top5"]:.2f}   [best test epoch, for comparison '
              f'with published numbers only: {best[name]["top1"]:.2f} at epoch {best[name]["epoch"]}]')
    report = class_report(predictions, labels, run.dataset)
    save_heads(os.path.join(args.output_dir, 'heads.pth'), heads_record('linear', classifiers, args, run.dataset, info))
    results = save_results(os.path.join(args.output_dir, 'results.json'), 'linear', args, info, run.streams,
                           ('epochs', 'optimizer', 'lr', 'schedule', 'cos', 'min_lr', 'warmup_epochs', 'momentum',
                            'betas', 'weight_decay', 'batch_size', 'batchnorm', 'fusion', 'fusion_weights',
                            'whole_clips', 'rotate_train', 'eval_every', 'seed'),
                           accuracy=last, **report, best_test_epoch_for_reference=best, history=history)
    save_confusion(report, args.plot_confusion, f'{args.dataset} {args.protocol} val, linear')
    return results


if __name__ == '__main__':
    run_cli(main, get_linear_parser())
