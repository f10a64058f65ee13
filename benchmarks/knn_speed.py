"""kNN evaluation time on an NTU-60-sized problem: ours (torch, chunked) and scikit-learn.

    python benchmarks/knn_speed.py [--train 40091 --test 16487 --dim 2048] [--device cuda] [--k 1 10 20]

Features are random clusters (60 classes), so the predictions can also be compared. Prints the
seconds of both implementations in the same run, their ratio and the agreement of predictions.
"""
import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from evaluation.knn import knn_predict  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', type=int, default=40091)
    parser.add_argument('--test', type=int, default=16487)
    parser.add_argument('--dim', type=int, default=2048)
    parser.add_argument('--classes', type=int, default=60)
    parser.add_argument('--k', type=int, nargs='+', default=[1])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--chunk', type=int, default=1024)
    parser.add_argument('--noise', type=float, default=5.0, help='within-class spread; sets how hard the toy problem is')
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(args.classes, args.dim, generator=gen)
    train_y = torch.randint(0, args.classes, (args.train,), generator=gen)
    test_y = torch.randint(0, args.classes, (args.test,), generator=gen)
    train = centres[train_y] + args.noise * torch.randn(args.train, args.dim, generator=gen)
    test = centres[test_y] + args.noise * torch.randn(args.test, args.dim, generator=gen)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU ({platform.machine()}, {os.cpu_count()} cores)'
    print(f'{args.train} x {args.test} features of {args.dim} dims, k = {args.k}; ours on {name}, '
          f'scikit-learn on the CPU; torch {torch.__version__}')

    start = time.perf_counter()
    ours = knn_predict(train.to(device), train_y.to(device), test.to(device), args.k, args.classes, args.chunk)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    theirs = {}
    for k in args.k:
        clf = KNeighborsClassifier(n_neighbors=k, metric='cosine', algorithm='brute').fit(train.numpy(), train_y.numpy())
        theirs[k] = clf.predict(test.numpy())
    sk_s = time.perf_counter() - start

    print(f'{"implementation":<28}{"seconds":>10}')
    print(f'{"ours (torch, chunked)":<28}{ours_s:>10.2f}')
    print(f'{"scikit-learn brute cosine":<28}{sk_s:>10.2f}')
    print(f'speed-up: {sk_s / ours_s:.1f}x')
    for k in args.k:
        agree = np.mean(ours[k].cpu().numpy() == theirs[k]) * 100
        acc = np.mean(theirs[k] == test_y.numpy()) * 100
        print(f'k={k}: predictions agree on {agree:.3f}% of test clips (top-1 of both on this toy problem: {acc:.1f}%)')


if __name__ == '__main__':
    main()
