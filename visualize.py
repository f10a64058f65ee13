"""Pictures a researcher would otherwise draw by hand.

    python visualize.py clip --dataset ucla --protocol xview --data-root DATA [--part train] (--index I | --name N) \\
        [--out PREFIX]
    python visualize.py curves OUT/log.txt [--out curves.png]

``clip`` writes PREFIX.gif (the clip animated, beside the two augmented views pretraining makes of
it) and PREFIX.png (a strip of frames, one row each), with the bones drawn, for any layout, 2D or
3D. ``curves`` draws a pretraining run's losses, contrastive accuracies, kNN monitor and learning
rate from its ``log.txt``.
"""
import argparse
import os

import torch

from feeder.augment import ViewAugment
from feeder.datasets import SkeletonFolder
from feeder.info import PARTS, dataset_info
from feeder.offline import check_step, offline_transform
from models import METHODS
from options.args import get_args_parser, get_augment_parser, resolve_common
from options.presets import recipe
from utils.plots import save_clip_pictures, save_curves
from utils.run import run_cli


def get_visualize_parser():
    parser = argparse.ArgumentParser('CMD pictures', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    clip = commands.add_parser('clip', parents=[get_args_parser(encoder_flags=False), get_augment_parser()],
                               help='a prepared clip and the views a method trains on')
    clip.add_argument('--method', default='cmd', choices=list(METHODS), help='whose views (models.METHODS)')
    clip.add_argument('--part', default='train', choices=PARTS)
    which = clip.add_mutually_exclusive_group(required=True)
    which.add_argument('--index', type=int, help='row of the clip in the part')
    which.add_argument('--name', help='name of the clip')
    clip.add_argument('--out', default=None, help='PREFIX of PREFIX.gif and PREFIX.png (default: the clip name)')
    curves = commands.add_parser('curves', help="a pretraining run's curves")
    curves.add_argument('log', help='the run\'s log.txt')
    curves.add_argument('--out', default=None, help='PNG to write (default: curves.png beside the log)')
    return parser


def draw_clip(args):
    dataset = dataset_info(args.dataset, args.data_root)
    defaults = recipe(dataset, args.encoder, args.method, args.protocol)[0]
    resolve_common(args, dataset, defaults, output_required=False)
    check_step(args.offline_step, dataset)  # the clip as the method's recipe prepares it
    folder = SkeletonFolder(os.path.join(args.data_root, args.protocol), args.part,
                            offline_transform(args.offline_step, dataset.layout))
    folder.check(dataset)
    index = folder.find(args.name, args.index)
    clip = folder.clip(index)
    torch.manual_seed(args.seed)
    augment = ViewAugment.from_args(args, dataset.layout, dataset.coordinates, METHODS[args.method].VIEWS,
                                    [s.name for s in getattr(METHODS[args.method], 'SETTINGS', ())])
    views = augment(clip[None], torch.tensor([clip.shape[1]]))
    name = folder.names[index]
    prefix = args.out or name
    coordinates = slice(0, dataset.coordinates)  # a confidence channel is not drawn
    panels = {f'{name}\n{clip.shape[1]} frames': clip[coordinates].numpy(),
              **{f'view {i + 1} ({kind})': view[0, coordinates].numpy()
                 for i, (kind, view) in enumerate(zip(augment.names, views))}}
    save_clip_pictures(dataset.layout, panels, f'{prefix}.gif', f'{prefix}.png')
    print(f'wrote {prefix}.gif and {prefix}.png')


def main(args):
    if args.command == 'clip':
        draw_clip(args)
    else:
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.log)), 'curves.png')
        save_curves(args.log, out)
        print(f'wrote {out}')


if __name__ == '__main__':
    run_cli(main, get_visualize_parser())
