"""The supervised protocols' model and loops: a head on an encoder's features, trained on every
stream at once, tested per stream and fused (docs/protocols.md)."""
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evaluation.features import raw_modality
from feeder.modalities import FUSED, MODALITIES
from models import HEADS
from models.encoder import StreamEncoder
from models.losses import topk_accuracy
from utils.schedule import adjust_learning_rate, make_optimizer, per_step_schedule


FUSIONS = ('softmax', 'logits-mean', 'logits-weighted')


class Classifier(StreamEncoder):
    """One stream's encoder (a :class:`models.encoder.StreamEncoder`; its features, not its ``fc``)
    and a new head: ``linear`` on the pooled features (with ``batchnorm``, after a BatchNorm without
    affine parameters and eps 1e-6: MAE's linear probe, for features whose scale
    varies by channel), or one of ``models.HEADS`` on the encoder's token grid."""

    def __init__(self, stream, num_classes, batchnorm=False, head='linear'):
        super().__init__(stream.encoder, stream.modality, stream.layout, stream.coordinates, stream.adapt)
        self.kind = head
        if head != 'linear':
            if not hasattr(stream.encoder, 'token_grid'):
                raise SystemExit(f'error: --head {head} reads the token grid of a transformer, which the '
                                 f'{type(stream.encoder).__name__} does not have')
            self.norm, self.head = torch.nn.Identity(), HEADS[head](stream.feature_dim, stream.layout.num_joints,
                                                                    num_classes)
            return
        self.norm = torch.nn.BatchNorm1d(stream.feature_dim, affine=False, eps=1e-6) if batchnorm \
            else torch.nn.Identity()
        self.head = torch.nn.Linear(stream.feature_dim, num_classes)
        torch.nn.init.normal_(self.head.weight, std=0.01)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, x):
        if self.kind != 'linear':
            return self.head(self.encoder.token_grid(self.inputs(x)))
        return self.head(self.norm(self.features(x)))


def fuse(logits, fusion='softmax', weights=None):
    """The fused class scores of several streams' ``logits`` ({stream: (N, classes)}, in the
    modalities' order): ``softmax``, the sum of their softmax; ``logits-mean``, the mean of the
    logits, one head on them trained together; ``logits-weighted``, their sum weighted by
    ``weights`` (one per stream). A method's protocol says which (its ``PROTOCOLS``)."""
    if fusion == 'softmax':
        return sum(v.softmax(dim=1) for v in logits.values())
    if fusion == 'logits-mean':
        return sum(logits.values()) / len(logits)
    if fusion == 'logits-weighted':
        if weights is None or len(weights) != len(logits):
            raise ValueError(f'--fusion logits-weighted needs one weight per stream ({", ".join(logits)}); got '
                             f'{weights}')
        return sum(w * v for w, v in zip(weights, logits.values()))
    raise ValueError(f'unknown fusion {fusion!r}; known: {", ".join(FUSIONS)}')


def stream_weights(weights, streams):
    """The fusion weights of ``streams``: ``weights`` are given per modality (joint, motion, bone);
    a raw stream (``--stream all+raw``) takes its modality's."""
    if weights is None:
        return None
    weight = dict(zip(MODALITIES, weights))
    return [weight[raw_modality(s) or s] for s in streams if (raw_modality(s) or s) in weight]


def train_classifiers_one_epoch(classifiers, loader, optimizer, device, frozen, quiet=False, epoch=0,
                                before_step=None, together=False, smoothing=0.0):
    """One epoch for every stream's classifier on the same clips (and ``before_step(i)`` before step
    ``i``, where given): each stream's cross-entropy, or with ``together`` that of the mean of their
    logits (``--fusion logits-mean``), with ``smoothing`` of the labels; frozen encoders stay in eval
    mode so their BatchNorm statistics are never touched."""
    for classifier in classifiers.values():
        classifier.train()
        if frozen:
            classifier.encoder.eval()
    total, steps = 0.0, 0
    for x, y in tqdm(loader, desc=f'epoch {epoch}', disable=quiet, leave=False):
        if before_step is not None:
            before_step(steps)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        outputs = [c(x) for c in classifiers.values()]
        if together:
            outputs = [sum(outputs) / len(outputs)]
        loss = sum(F.cross_entropy(out, y, label_smoothing=smoothing) for out in outputs)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss ({loss.item()}) at epoch {epoch}, step {steps}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
        steps += 1
    return total / max(steps, 1)


@torch.no_grad()
def evaluate_classifiers(classifiers, loader, device, fusion='softmax', weights=None):
    """Top-1/top-5 (%) per stream and, for several streams, of their :func:`fuse`d scores; and
    ``(predictions, labels)``: each one's predicted classes and the clips' labels (on the CPU)."""
    scores = {s: [] for s in classifiers}
    labels = []
    for classifier in classifiers.values():
        classifier.eval()
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        for stream, classifier in classifiers.items():
            scores[stream].append(classifier(x))
        labels.append(y.to(device))
    labels = torch.cat(labels)
    scores = {s: torch.cat(v) for s, v in scores.items()}
    if len(scores) > 1:
        scores[FUSED] = fuse(scores, fusion, stream_weights(weights, scores))
    accuracy = {name: {'top1': topk_accuracy(score, labels).item(),
                       'top5': topk_accuracy(score, labels, min(5, score.shape[1])).item()}
                for name, score in scores.items()}
    return accuracy, ({name: score.argmax(dim=1).cpu() for name, score in scores.items()}, labels.cpu())


def fit_classifiers(classifiers, train_loader, test_loader, args, device, frozen, lr_scales=None):
    """``--optimizer`` and its schedule (:mod:`utils.schedule`; with a warm-up or cosine decay, set
    at every step), ``lr_scales`` ({stream.parameter: factor}) for layer-wise decay, ``--fusion``
    and ``--label-smoothing`` where the arguments have them; returns the per-epoch history and the
    last test's ``(predictions, labels)`` (:func:`evaluate_classifiers`). The result is the last
    epoch's."""
    fusion, weights = getattr(args, 'fusion', 'softmax'), getattr(args, 'fusion_weights', None)
    together = fusion == 'logits-mean' and len(classifiers) > 1
    optimizer = make_optimizer(((f'{s}.{n}', p) for s, c in classifiers.items() for n, p in c.named_parameters()),
                               args, lr_scales)
    history = []
    for epoch in range(args.epochs):
        lr = adjust_learning_rate(optimizer, epoch, args)
        loss = train_classifiers_one_epoch(classifiers, train_loader, optimizer, device, frozen, args.quiet, epoch,
                                           per_step_schedule(optimizer, epoch, len(train_loader), args), together,
                                           getattr(args, 'label_smoothing', 0.0))
        record = {'epoch': epoch, 'lr': lr, 'train_loss': loss}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            record['test'], tested = evaluate_classifiers(classifiers, test_loader, device, fusion, weights)
            shown = ', '.join(f'{s} {v["top1"]:.2f}' for s, v in record['test'].items())
            print(f'epoch {epoch}: loss {loss:.4f}, test top-1 {shown}')
        history.append(record)
    return history, tested


def summarise(history):
    """Last epoch's accuracies (the result) and, labelled apart, the best test epoch per stream."""
    evaluated = [r for r in history if 'test' in r]
    last = evaluated[-1]['test']
    best = {s: max(({'top1': r['test'][s]['top1'], 'epoch': r['epoch']} for r in evaluated),
                   key=lambda b: b['top1']) for s in last}
    return last, best
