"""Per-class accuracy and the confusion matrix of a classification, for ``results.json``, and
their picture (docs/protocols.md, "Per-class reports")."""
import torch

from feeder.modalities import FUSED


def confusion_matrix(predictions, labels, num_classes):
    """Counts (num_classes, num_classes): row the true class, column the predicted one."""
    labels, predictions = labels.long().cpu(), predictions.long().cpu()
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).view(num_classes, num_classes)


def class_report(predictions, labels, dataset):
    """``classes`` (the dataset's class names, else numbers), and per stream of ``predictions``
    ({stream: (N,) predicted classes} of clips labelled ``labels``): ``per_class`` top-1 (%) by
    class name (``None`` for a class without test clips) and ``confusion`` (row: true class)."""
    names = [dataset.class_name(c) for c in range(dataset.num_classes)]
    report = {'classes': names, 'per_class': {}, 'confusion': {}}
    for stream, predicted in predictions.items():
        counts = confusion_matrix(predicted, labels, dataset.num_classes)
        clips = counts.sum(dim=1)
        report['per_class'][stream] = {name: counts[c, c].item() * 100 / clips[c].item() if clips[c] else None
                                       for c, name in enumerate(names)}
        report['confusion'][stream] = counts.tolist()
    return report


def headline(report):
    """The stream a picture shows: the fusion where there is one, else the only stream."""
    return FUSED if FUSED in report['confusion'] else next(iter(report['confusion']))


def plot_confusion(report, path, title):
    """The confusion matrix of :func:`headline`'s stream, each row as shares of its class's clips,
    with the class names, to ``path`` (written whole, through a temporary file)."""
    from utils.plots import plt, save_figure  # matplotlib only when a picture is asked for
    stream = headline(report)
    counts = torch.tensor(report['confusion'][stream], dtype=torch.float64)
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(report['classes'])
    size = min(24.0, max(5.0, 0.22 * n + 2))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares.numpy(), cmap='Blues', vmin=0, vmax=1)
    fontsize = max(3, min(9, 400 // max(n, 1)))
    ax.set_xticks(range(n), report['classes'], rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), report['classes'], fontsize=fontsize)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(f'{title} ({stream})')
    fig.colorbar(image, ax=ax, fraction=0.046, label='share of the class\'s clips')
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def save_confusion(report, path, title):
    """:func:`plot_confusion` where ``path`` is given (``--plot-confusion``), and a line saying so."""
    if path:
        plot_confusion(report, path, title)
        print(f'wrote {path}')
