"""What preparation keeps of own data: 1-NN on the source coordinates against 1-NN on the arrays
``feeder.prepare`` wrote from them, by one procedure (docs/data.md, "Your own data").

    python benchmarks/preparation_floor.py --annotations SRC --layout L.json --data-root DIR --protocol B

Each clip, both persons in the source's order: centred per frame on person 0's layout centre
(the source; missed joints left where they are) or as prepared, then resampled linearly to 50
frames, flattened and compared by cosine; every val clip takes the label of its most similar
training clip. ``knn_eval.py --checkpoint raw`` measures the prepared arrays as an encoder sees
them; this script puts the source beside them.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from feeder.datasets import SkeletonFolder  # noqa: E402
from feeder.layouts import get_layout  # noqa: E402
from feeder.raw.custom import list_clips, load_clip  # noqa: E402
from feeder.raw.pose import PosePreparation  # noqa: E402

FRAMES = 50


def resampled(clip, frames=FRAMES):
    """(M, T, V, C) -> flattened, resampled linearly to ``frames`` frames."""
    pos = np.linspace(0, clip.shape[1] - 1, frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, clip.shape[1] - 1)
    w = (pos - lo)[None, :, None, None]
    return (clip[:, lo] * (1 - w) + clip[:, hi] * w).ravel()


def nn1_accuracy(train, train_labels, test, test_labels):
    a = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    b = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    return float((train_labels[(b @ a.T).argmax(1)] == test_labels).mean() * 100)


def source_features(annotations, layout, benchmark, persons):
    """{part: (features, labels)} of the source clips of ``benchmark``."""
    data = list_clips(annotations, layout)
    coordinates = 3 if data.channels == 'xyz' else 2
    prep = PosePreparation(data.channels, persons, layout)
    out = {'train': ([], []), 'val': ([], [])}
    for clip in data.clips:
        part = clip.parts.get(benchmark)
        if part is None:
            continue
        keypoint = load_clip(clip, data.format, prep)[0]
        points = np.zeros((persons,) + keypoint.shape[1:3] + (coordinates,))
        kept = np.nan_to_num(keypoint[:persons, ..., :coordinates].astype(np.float64))
        points[:len(kept)] = kept
        centred = points - points[:1, :, list(layout.center)].mean(2, keepdims=True)
        out[part][0].append(resampled(centred))
        out[part][1].append(clip.label)
    return {part: (np.stack(x), np.array(y)) for part, (x, y) in out.items()}, coordinates


def prepared_features(root, benchmark, coordinates):
    """{part: (features, labels)} of the prepared arrays (their first ``coordinates`` channels)."""
    out = {}
    for part in ('train', 'val'):
        folder = SkeletonFolder(os.path.join(root, benchmark), part)
        clips = [folder.clip(i).numpy()[:coordinates].transpose(3, 1, 2, 0).astype(np.float64) for i in range(len(folder))]
        out[part] = (np.stack([resampled(c) for c in clips]), folder.labels)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--annotations', required=True, help='the source that feeder.prepare read')
    parser.add_argument('--layout', required=True)
    parser.add_argument('--data-root', required=True, help='what feeder.prepare wrote from it')
    parser.add_argument('--protocol', required=True)
    args = parser.parse_args()
    layout = get_layout(args.layout)
    persons = SkeletonFolder(os.path.join(args.data_root, args.protocol), 'train').shape[-1]
    source, coordinates = source_features(args.annotations, layout, args.protocol, persons)
    prepared = prepared_features(args.data_root, args.protocol, coordinates)
    for name, feats in (('source coordinates, centred per frame', source), ('prepared arrays', prepared)):
        accuracy = nn1_accuracy(*feats['train'], *feats['val'])
        print(f'{name:<40} 1-NN {accuracy:5.1f}  ({len(feats["train"][1])} train, {len(feats["val"][1])} val clips)')


if __name__ == '__main__':
    main()
