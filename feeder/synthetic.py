"""``python -m feeder.synthetic``: the synthetic dataset's generators, trimmed clips
(:mod:`feeder.raw.synthetic`) or untrimmed recordings (:mod:`feeder.raw.untrimmed`)."""
import argparse
import os
import sys

from feeder.raw import synthetic
from feeder.raw.untrimmed import generate_untrimmed


def main(argv=None):
    parser = argparse.ArgumentParser('Generate the synthetic NTU-format dataset', description=synthetic.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--classes', type=int, default=len(synthetic.ACTIONS), help=f'at most {len(synthetic.ACTIONS)}')
    parser.add_argument('--subjects', type=int, default=10)
    parser.add_argument('--cameras', type=int, default=3)
    parser.add_argument('--replications', type=int, default=2)
    parser.add_argument('--setups', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--format', default='ntu', choices=['ntu', 'pyskl-2d', 'pyskl-3d', 'openpose', 'kinetics-json'],
                        help='ntu: .skeleton files; pyskl-2d: OUT/synthetic_2d.pkl, COCO-17 detections in pixels; '
                             'pyskl-3d: OUT/synthetic_3d.pkl with its layout OUT/synthetic_3d_layout.json; '
                             'openpose: the 2D detections as OpenPose per-frame JSON folders with labels.csv; '
                             'kinetics-json: as Kinetics-skeleton files (prepare them with --image-size 1920 1080)')
    parser.add_argument('--untrimmed', action='store_true',
                        help='long recordings of several performances each in the PKU-MMD layout (skeleton/, label/, '
                             'split/; prepare them with --dataset pku1); --replications and --setups do not apply')
    args = parser.parse_args(argv)
    if args.untrimmed:
        if args.format != 'ntu':
            parser.error(f'--untrimmed writes the PKU-MMD layout; --format {args.format} does not apply')
        try:
            names = generate_untrimmed(args.out_dir, args.classes, args.subjects, args.cameras, args.seed)
        except ValueError as e:
            parser.error(str(e))
        print(f'wrote {len(names)} untrimmed recordings to {args.out_dir} (skeleton/, label/, split/)')
        return 0
    sizes = dict(classes=args.classes, subjects=args.subjects, cameras=args.cameras, replications=args.replications,
                 setups=args.setups, seed=args.seed)
    try:
        if args.format == 'ntu':
            print(f'wrote {len(synthetic.generate(args.out_dir, **sizes))} .skeleton files to {args.out_dir}')
        elif args.format == 'openpose':
            print(f'wrote {synthetic.write_openpose(args.out_dir, **sizes)} OpenPose video folders to {args.out_dir}')
        elif args.format == 'kinetics-json':
            print(f'wrote {synthetic.write_kinetics(args.out_dir, **sizes)} Kinetics-skeleton files to {args.out_dir}')
        else:
            mode = args.format[-2:]
            path = os.path.join(args.out_dir, f'synthetic_{mode}.pkl')
            print(f'wrote {synthetic.write_pyskl(path, mode, **sizes)} clips to {path}')
    except ValueError as e:
        parser.error(str(e))
    return 0


if __name__ == '__main__':
    sys.exit(main())
