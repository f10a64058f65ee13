"""Similar clips: the training clips nearest to one clip by an encoder's kNN features.

    python retrieve.py --checkpoint CKPT --dataset D --data-root DIR --protocol P (--name NAME | --index I) \\
        [--part val] [--k 10] [--stream all] [--out neighbours.csv] [--plot OUT.png]

The query is chosen as in ``visualize.py clip``, from ``--part`` (default: val where the
benchmark has one, else train). The gallery is the training part, the query itself left out.
Similarity is the cosine of the features kNN uses (with ``--stream all``, the default, of the
three streams' L2-normalised features side by side, as ``knn_eval.py`` fuses them), so the first
neighbour's label is the 1-NN prediction. Prints (the table last on standard output, the rest on
standard error) and, with ``--out``, writes ``rank,name,label,similarity``; ``--plot`` draws the
query above its neighbours. For an unlabelled archive this is search by example.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

from evaluation.common import setup_evaluation
from evaluation.features import extract_features
from evaluation.knn import with_fusion
from feeder.info import PARTS
from feeder.modalities import result_name
from options.args import get_args_parser, get_eval_parser, positive_int
from options.presets import KNN
from utils.io import csv_text, write_text_atomic
from utils.plots import save_clip_pictures
from utils.run import run_cli


def get_retrieve_parser():
    parser = argparse.ArgumentParser('CMD retrieval', parents=[get_args_parser(), get_eval_parser()],
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--index', type=int, help='row of the query clip in its part')
    which.add_argument('--name', help='name of the query clip')
    parser.add_argument('--part', default=None, choices=PARTS,
                        help="the query's part (default: val where the benchmark has one, else train)")
    parser.add_argument('--k', type=positive_int, default=10, help='neighbours listed')
    parser.add_argument('--out', default=None, help='CSV to write as well')
    parser.add_argument('--plot', default=None, help='PNG of the query and its neighbours')
    return parser


def neighbours(query, gallery, k, leave_out=None):
    """The ``k`` rows of ``gallery`` (N, D) most cosine-similar to ``query`` (D,), without row
    ``leave_out``: (similarities, indices), most similar first."""
    sim = F.normalize(gallery.float(), dim=1) @ F.normalize(query.float(), dim=0)
    if leave_out is not None:
        sim[leave_out] = -float('inf')
    top = sim.topk(min(k, len(gallery) - (leave_out is not None)))
    return top.values, top.indices


def main(args):
    run = setup_evaluation(args, KNN, output_required=False, protocol='features')
    args = run.args
    part = args.part or ('val' if os.path.isfile(os.path.join(run.root, 'val_data_joint.npy')) else 'train')
    encoders, info, _ = run.load_encoders()
    gallery = run.clips('train', info['frames'], labelled=False)
    pool = gallery if part == 'train' else run.clips(part, info['frames'], labelled=False)
    index = pool.folder.find(args.name, args.index)
    feature = result_name(run.streams)

    def features(clips):
        feats, _ = extract_features(encoders, clips, run.device, args.batch_size, args.workers)
        return with_fusion(feats, run.streams)[feature]
    query = features(torch.utils.data.Subset(pool, [index]))[0]
    sims, rows = neighbours(query, features(gallery), args.k, index if part == 'train' else None)

    folder = gallery.folder
    table = csv_text(['rank', 'name', 'label', 'similarity'],
                     [[rank, folder.names[row], run.dataset.class_name(folder.labels[row]), f'{sim:.6f}']
                      for rank, (sim, row) in enumerate(zip(sims.tolist(), rows.tolist()), 1)])
    # the table alone on standard output, after the run's header, so that it can be read as CSV
    print(f'query: {part} clip {index}, {pool.folder.names[index]}; the nearest training clips by {feature} '
          'features (cosine):', file=sys.stderr)
    print(table, end='')
    if args.out:
        write_text_atomic(args.out, table)
        print(f'wrote {args.out}', file=sys.stderr)
    if args.plot:
        coordinates = slice(0, run.dataset.coordinates)  # a confidence channel is not drawn
        panels = {f'query {pool.folder.names[index]}': pool.folder.clip(index)[coordinates].numpy()}
        for rank, (sim, row) in enumerate(zip(sims.tolist(), rows.tolist()), 1):
            panels[f'{rank}. {folder.names[row]} ({sim:.2f})'] = folder.clip(row)[coordinates].numpy()
        save_clip_pictures(run.dataset.layout, panels, None, args.plot)
        print(f'wrote {args.plot}', file=sys.stderr)
    return [(folder.names[r], s) for s, r in zip(sims.tolist(), rows.tolist())]


if __name__ == '__main__':
    run_cli(main, get_retrieve_parser())
