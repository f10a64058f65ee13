"""Class predictions of a trained classifier (the ``heads.pth`` of ``linear_eval.py`` or
``finetune.py``) for prepared clips, labelled or not.

    python predict.py --checkpoint OUT/heads.pth --dataset D --data-root DIR --protocol P [--parts val] \\
        --out predictions.csv

writes the header ``part,name,label,pred1,prob1,...,pred5,prob5`` and a row per clip: the five
likeliest classes (fewer where there are fewer classes) by name where the dataset records its
class names, else by number, and ``label`` empty where the clip has none. With several streams
the probabilities are the mean of the streams' softmax, whose argmax is ``linear_eval.py``'s
fusion. Clips are prepared as the test set is (the centre 95% resized to the encoder's frames).
Where every clip of a part is labelled in the classifier's classes, ``OUT.json`` (beside the
``.csv``) holds each such part's top-1, per-class accuracy and confusion matrix
(``--plot-confusion`` draws the first such part's).
"""
import argparse
import json
import os

import torch
from torch.utils.data import DataLoader

from evaluation.common import setup_evaluation
from evaluation.heads import classifier_model, load_classifiers, read_heads
from evaluation.report import class_report, save_confusion
from feeder.info import PARTS
from feeder.modalities import result_name
from options.args import add_report_arguments, get_args_parser
from options.presets import KNN
from utils.io import csv_text, write_text_atomic
from utils.run import run_cli

TOP = 5


def get_predict_parser():
    parser = argparse.ArgumentParser('CMD predictions', parents=[get_args_parser(encoder_flags=False)], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='OUT/heads.pth of linear_eval.py or finetune.py')
    parser.add_argument('--parts', nargs='+', default=None, choices=PARTS,
                        help="the benchmark's parts to predict (default: every part it has)")
    parser.add_argument('--out', required=True, help='the .csv file to write')
    add_report_arguments(parser)
    return parser


@torch.no_grad()
def predict(model, clips, device, batch_size, workers):
    """(N, classes) probabilities of a :class:`feeder.datasets.DownstreamDataset`."""
    loader = DataLoader(clips, batch_size=batch_size, shuffle=False, num_workers=workers)
    model.eval().to(device)
    return torch.cat([model(x.to(device)).cpu() for x, _ in loader])


def main(args):
    if os.path.isdir(args.out) or args.out.lower().endswith('.json'):
        raise SystemExit(f'error: --out {args.out}: expected a .csv file to write (the per-class report of labelled '
                         'parts goes beside it, as .json)')
    record = read_heads(args.checkpoint)
    args.stream = 'all' if len(record['streams']) > 1 else record['streams'][0]
    run = setup_evaluation(args, KNN, output_required=False)
    args = run.args
    try:  # clips of another skeleton are mapped onto the encoders' (feeder/joints.py)
        classifiers, trained_on = load_classifiers(record, run.dataset)
    except ValueError as e:
        raise SystemExit(f'error: --checkpoint {args.checkpoint} cannot read {run.dataset.name}: {e}') from None
    adapt = next(iter(classifiers.values())).adapt
    if adapt is not None:
        print(f'--checkpoint {args.checkpoint}: {adapt.summary()}')
    model = classifier_model(record, classifiers).body  # the clips below are cropped as it was tested
    # the dataset's labels are the classifier's classes only where both name the same classes
    names = run.dataset.class_names, trained_on.class_names
    same_classes = run.dataset.num_classes == trained_on.num_classes and (not all(names) or names[0] == names[1])
    if not same_classes:
        print(f'{run.dataset.name} has other classes than the classifier ({trained_on.name}): its labels are written as '
              'its own, and no top-1 is computed')
    reported = result_name(record['streams'])  # as linear_eval.py names it
    reports = {}
    parts = args.parts or [p for p in PARTS if os.path.isfile(os.path.join(run.root, f'{p}_data_joint.npy'))]
    rows = []
    for part in parts:
        whole = bool((record.get('args') or {}).get('whole_clips'))  # as the classifier was tested
        clips = run.clips(part, record['frames'], labelled=False, whole=whole)
        probs = predict(model, clips, run.device, args.batch_size, args.workers)
        top = probs.topk(min(TOP, probs.shape[1]), dim=1)
        for name, label, p, c in zip(clips.folder.names, clips.folder.labels, top.values.tolist(), top.indices.tolist()):
            cells = [x for pair in zip(map(trained_on.class_name, c), (f'{v:.6f}' for v in p)) for x in pair]
            rows.append([part, name, run.dataset.class_name(label)] + cells
                        + [''] * (2 * TOP - len(cells)))
        labels = torch.as_tensor(clips.folder.labels)
        if same_classes and len(labels) and bool((labels >= 0).all()):
            predicted = probs.argmax(dim=1)
            reports[part] = {'top1': (predicted == labels).float().mean().item() * 100,
                             **class_report({reported: predicted}, labels, trained_on)}
        print(f'{part}: {len(clips)} clips' + (f', top-1 {reports[part]["top1"]:.2f}' if part in reports else ''))
    header = ['part', 'name', 'label'] + [f'{c}{i}' for i in range(1, TOP + 1) for c in ('pred', 'prob')]
    table = csv_text(header, rows)
    write_text_atomic(args.out, table)
    print(f'wrote {args.out}')
    if reports:
        path = os.path.splitext(args.out)[0] + '.json'
        write_text_atomic(path, json.dumps({'checkpoint': args.checkpoint, 'parts': reports}, indent=1))
        print(f'wrote {path}')
        first = next(iter(reports))
        save_confusion(reports[first], args.plot_confusion, f'{run.dataset.name} {args.protocol} {first}')
    elif args.plot_confusion:
        print(f'--plot-confusion {args.plot_confusion}: no part is labelled in the classifier\'s classes; not drawn')
    return table


if __name__ == '__main__':
    run_cli(main, get_predict_parser())
