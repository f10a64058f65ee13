"""kNN evaluation of frozen pretrained features (docs/protocols.md).

    python knn_eval.py --checkpoint CKPT --dataset ntu60 --protocol xsub --data-root DATA [--stream all] [--k 1 10 20]

Features are the encoders' outputs before ``fc`` on the centre-cropped train and test clips,
L2-normalised; each test clip takes the majority label of its k most cosine-similar training
clips. ``--stream all`` also reports the fusion of the three streams (concatenated normalised
features). Without ``--checkpoint`` (or with ``random``) a randomly initialised encoder is
measured, and with ``raw`` the prepared coordinates themselves: the baselines every table needs.
"""
import argparse
import os
import time

from evaluation.common import setup_evaluation
from evaluation.features import extract_features
from evaluation.knn import knn_accuracy, knn_predictions, with_fusion
from evaluation.report import class_report, save_confusion
from evaluation.results import save_results
from options.args import add_report_arguments, get_args_parser, get_eval_parser, positive_int, show_defaults
from options.presets import KNN
from utils.run import run_cli


def get_knn_parser():
    parser = argparse.ArgumentParser('CMD kNN evaluation', parents=[get_args_parser(), get_eval_parser()],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--k', type=positive_int, nargs='+', default=[1], help='neighbours (several at once)')
    parser.add_argument('--tsne', default=None, metavar='PNG', help='save a t-SNE picture of the test features')
    add_report_arguments(parser)
    show_defaults(parser, lambda dataset: KNN)
    return parser


def result_path(args):
    if args.output_dir:
        return os.path.join(args.output_dir, 'results.json')
    if args.checkpoint not in (None, 'random', 'raw'):
        stem = os.path.splitext(args.checkpoint)[0]
        return f'{stem}_knn_{args.dataset}_{args.protocol}_{args.stream}.json'
    raise SystemExit(f'error: --output-dir is required with --checkpoint {args.checkpoint or "random"} '
                     '(results.json goes there)')


def print_table(title, rows, columns):
    print(title)
    print('  ' + ''.join(f'{c:>12}' for c in ['stream'] + columns))
    for name, values in rows.items():
        print('  ' + f'{name:>12}' + ''.join(f'{values[c]:>12.2f}' for c in columns))


def main(args):
    run = setup_evaluation(args, KNN, output_required=False)
    args = run.args
    out_path = result_path(args)
    encoders, info, _ = run.load_encoders()
    start = time.perf_counter()
    feats, labels = {}, {}
    for part in ('train', 'val'):
        clips = run.clips(part, info['frames'])
        feats[part], labels[part] = extract_features(encoders, clips, run.device, args.batch_size, args.workers)
    feats = {part: with_fusion(f, run.streams) for part, f in feats.items()}
    predictions = knn_predictions(feats['train'], labels['train'], feats['val'], args.k, run.dataset.num_classes)
    accuracy = knn_accuracy(predictions, labels['val'])
    seconds = time.perf_counter() - start
    print_table(f'kNN top-1 (%) on {args.dataset} {args.protocol} val, {info["kind"]} encoder'
                f'{"" if info["checkpoint"] is None else " " + info["checkpoint"]}', accuracy,
                [f'top1@k={k}' for k in args.k])
    # the per-class report is of the first k given
    report = class_report({name: by_k[args.k[0]] for name, by_k in predictions.items()}, labels['val'], run.dataset)
    settings = {'k': args.k, 'report_k': args.k[0], 'metric': 'cosine', 'test_crop': 'centre 95%'}
    results = save_results(out_path, 'knn', args, info, run.streams, settings, accuracy=accuracy, **report,
                           train_samples=len(labels['train']), test_samples=len(labels['val']), seconds=seconds)
    save_confusion(report, args.plot_confusion, f'{args.dataset} {args.protocol} val, {args.k[0]}-NN')
    if args.tsne:
        from evaluation.tsne import save_tsne  # matplotlib only when a picture is asked for
        save_tsne(feats['val'], labels['val'], args.tsne, title=f'{args.dataset} {args.protocol} val')
        print(f'wrote {args.tsne}')
    return results


if __name__ == '__main__':
    run_cli(main, get_knn_parser())
