"""k-nearest-neighbour classification on cosine similarity, in chunks (GPU when the features are)."""
import torch
import torch.nn.functional as F

from feeder.modalities import FUSED


@torch.no_grad()
def knn_predict(train_features, train_labels, test_features, ks=(1,), num_classes=None, chunk=1024):
    """Majority vote among the ``k`` most cosine-similar training samples, for every ``k`` at once.

    Vote ties go to the smallest class index, as in scikit-learn's
    ``KNeighborsClassifier(metric='cosine')``. Memory is bounded by ``chunk x len(train)``.
    Returns {k: predicted labels (len(test),)}.
    """
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    labels = train_labels.to(train.device).long()
    num_classes = num_classes or int(labels.max()) + 1
    kmax = max(ks)
    if kmax > len(train):
        raise ValueError(f'k = {kmax} exceeds the {len(train)} training samples')
    out = {k: [] for k in ks}
    for start in range(0, len(test), chunk):
        sim = test[start:start + chunk] @ train.T
        index = sim.topk(kmax, dim=1).indices
        neighbours = labels[index]
        for k in ks:
            votes = torch.zeros(len(index), num_classes, device=train.device)
            votes.scatter_add_(1, neighbours[:, :k], torch.ones_like(neighbours[:, :k], dtype=votes.dtype))
            out[k].append(votes.argmax(dim=1))
    return {k: torch.cat(v) for k, v in out.items()}


def with_fusion(features, streams):
    """``features`` ({stream: (N, D)}) plus, for several streams, ``fused``: their L2-normalised
    features concatenated."""
    if len(streams) > 1:
        features = {**features, FUSED: torch.cat([F.normalize(features[s], dim=1) for s in streams], dim=1)}
    return features


def knn_predictions(train_features, train_labels, test_features, ks, num_classes=None):
    """Predicted labels per feature set (dicts keyed by stream) and k: {stream: {k: (N,)}}."""
    return {name: knn_predict(train_features[name], train_labels, test_features[name], ks, num_classes=num_classes)
            for name in train_features}


def knn_accuracy(predictions, test_labels):
    """Top-1 (%) of :func:`knn_predictions`: {stream: {'top1@k=K': accuracy}}."""
    return {name: {f'top1@k={k}': (p == test_labels.to(p.device)).float().mean().item() * 100 for k, p in by_k.items()}
            for name, by_k in predictions.items()}
