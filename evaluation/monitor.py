"""The kNN monitor of pretraining: 1-NN and 20-NN top-1 of the benchmark's evaluation split, per
stream and fused, every few epochs, computed exactly as ``knn_eval.py`` computes them. It is for
watching a run learn; settings are chosen on a validation benchmark, not on this."""
import os

import torch

from evaluation.features import extract_features
from evaluation.knn import knn_accuracy, knn_predictions, with_fusion
from feeder.datasets import DownstreamDataset, SkeletonFolder
from options.presets import KNN
from utils.dist import concat_all_gather, rank, world_size


def knn_every_default(epochs):
    """A tenth of the run, at least every epoch."""
    return max(1, epochs // 10)


class KNNMonitor:
    def __init__(self, root, dataset, frames, every, epochs, workers, device, transform=None):
        self.dataset, self.every, self.epochs, self.workers, self.device = dataset, every, epochs, workers, device
        self.note, self.parts = None, {}
        if not every:
            return
        if not os.path.isfile(os.path.join(root, 'val_data_joint.npy')):
            self.note = 'kNN monitor skipped: the benchmark has no val part'
            return
        self.parts = {part: DownstreamDataset(SkeletonFolder(root, part, transform), frames=frames)
                      for part in ('train', 'val')}
        if any((p.folder.labels < 0).any() for p in self.parts.values()):
            self.note = 'kNN monitor skipped: the data has unlabelled clips'
        self.ks = sorted({1, min(20, len(self.parts['train']))})

    def due(self, epoch):
        return self.note is None and self.every > 0 and ((epoch + 1) % self.every == 0 or epoch + 1 == self.epochs)

    @torch.no_grad()
    def __call__(self, encoders):
        """{'knn<k>_<stream>': top-1 %} for the query ``encoders`` ({stream: encoder}; left in eval
        mode). Under DDP each process encodes every world-size-th clip and all features are used."""
        streams = list(encoders)
        feats, labels = {}, {}
        for part, clips in self.parts.items():
            feats[part], labels[part] = _all_ranks(encoders, clips, self.dataset, self.device, self.workers)
        feats = {part: with_fusion(f, streams) for part, f in feats.items()}
        accuracy = knn_accuracy(knn_predictions(feats['train'], labels['train'], feats['val'], self.ks,
                                                self.dataset.num_classes), labels['val'])
        return {f'knn{k}_{name}': values[f'top1@k={k}'] for name, values in accuracy.items() for k in self.ks}


class KNNMonitors:
    """Several benchmarks' monitors as one (a pooled run's: docs/pretraining.md, "Pooling datasets"):
    ``monitors`` [(prefix, :class:`KNNMonitor`)], the run's own with prefix '' and its keys as they
    are, each pooled one's keys ``<prefix>/knn<k>_<stream>``."""

    def __init__(self, monitors):
        self.monitors = monitors
        notes = [f'{prefix}: {m.note}' if prefix else m.note for prefix, m in monitors if m.note]
        self.note = '; '.join(notes) or None

    def due(self, epoch):
        return any(m.due(epoch) for _, m in self.monitors)

    def __call__(self, encoders):
        out = {}
        for prefix, monitor in self.monitors:
            if monitor.note is None:
                out.update({f'{prefix}/{k}' if prefix else k: v for k, v in monitor(encoders).items()})
        return out


def _all_ranks(encoders, clips, dataset, device, workers):
    world, n = world_size(), len(clips)
    if world == 1:
        return extract_features(encoders, clips, device, KNN['batch_size'], workers)
    per = -(-n // world)
    # rank r encodes clips r, r + world, ...; the last index pads the short shards
    indices = [min(i, n - 1) for i in range(rank(), per * world, world)]
    feats, labels = extract_features(encoders, torch.utils.data.Subset(clips, indices), device, KNN['batch_size'],
                                     workers)
    out = {}
    for name, value in {**feats, '_labels': labels}.items():
        # gathered side by side, (per, world, ...): row k * world + r is clip k * world + r
        out[name] = concat_all_gather(value.unsqueeze(1), dim=1).flatten(0, 1)[:n]
    labels = out.pop('_labels')
    return out, labels
