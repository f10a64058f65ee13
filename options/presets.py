"""The recipes: every default of pretraining and evaluation that no encoder or method owns, per
dataset, and how a run's defaults are layered (docs/protocols.md). What the datasets themselves are
lives in ``feeder/info.py``; an encoder's and a method's own settings, recipes and protocols live
with them (``SETTINGS``, ``RECIPE``, ...)."""
import math

from models import DEFAULT_METHOD, ENCODERS, SMALL_DEFAULT, method_class

# The published recipe of the default method (models.DEFAULT_METHOD), with its encoder, the GRU (whose
# published size is its settings' defaults: 3 x 1024, the published chains, the last frame); every
# run starts from it, and its encoder's and method's own settings and recipes change it.
PRETRAIN = dict(
    encoder='gru', epochs=451, schedule=[351], lr=0.01, momentum=0.9, weight_decay=1e-4,
    batch_size=64, frames=64, min_crop=None, mlp=True, dim=128, save_every=10, seed=42, shear=1.0, corruption=0.5,
    rotation=0.0, modalities=['joint', 'motion', 'bone'], optimizer='sgd', cos=False, min_lr=0.0, warmup_epochs=0,
    betas=[0.9, 0.95], offline_step='none')

# The small-data preset (docs/protocols.md, "Small datasets"): settings chosen by measurement on
# validation benchmarks (NW-UCLA xview_dev, SBU fold 1 split by subject pairs); the published
# sizes do not learn there. Its batch, queue, top-k, epochs, key momentum and frames follow from
# the training set by ``small_data_rules`` where its size is known (a dataset prepared here); the
# values below stand where it is not.
SMALL = dict(hidden_size=128, frames=32, min_crop=16, lr=0.05, queue_size=256, topk=128, epochs=150,
             schedule=[120], save_every=25, gru_mode='bidirectional', momentum_key=0.99, corruption=0.0)
# Per-dataset changes. PKU-MMD II trains longer; the synthetic demo keeps a fixed, short budget.
DATASET_RECIPES = {
    'pku2': dict(epochs=1001, schedule=[801]),
    'synthetic': dict(SMALL, batch_size=32, epochs=60, schedule=[50], save_every=20),
}
# Datasets trained with the small-data preset and its rules; a custom dataset is, below
# SMALL_DATA_CLIPS training clips, and is trained with the published recipe above. An encoder's and
# a method's own changes on small data are their SMALL_RECIPE.
SMALL_DATASETS = ('ucla', 'custom')
SMALL_DATA_CLIPS = 5000
# What a checkpoint that does not record one of these settings was trained with: the code then
# had no such setting and did what the published method does (what its paper describes, for the
# defects that --fix-defects now fixes).
UNRECORDED_DEFAULTS = dict(gru_mode='published', gru_pool='last', shear=1.0, corruption=0.5, rotation=0.0,
                           optimizer='sgd', min_lr=0.0, warmup_epochs=0, fix_defects=True,
                           offline_step='none', init='pytorch')

# The rules' constants (docs/protocols.md, "Small datasets").
RULES = dict(max_batch=64, clips_per_batch=8, lr_per_64=0.05, queue_share=1 / 3, topk_share=0.5, steps=2250,
             drop_at=0.8, key_memory_share=1 / 22.5, min_frames=16, max_frames=32)


def small_data_rules(clips, median_length=None, world_size=1, batch_size=None, epochs=None):
    """The small-data settings of a training set of ``clips`` clips whose median stored length is
    ``median_length``, and for each a line saying why. ``world_size``: training processes;
    ``batch_size`` and ``epochs``, where given, are taken as they are and the rest follows them."""
    r = RULES
    batch = batch_size or max(1, min(r['max_batch'], 2 ** math.floor(math.log2(max(clips / r['clips_per_batch'], 1)))))
    glob = batch * world_size
    queue = glob * max(1, math.floor(r['queue_share'] * clips / glob))
    topk = max(1, round(r['topk_share'] * queue))
    steps_per_epoch = max(1, clips // glob)
    epochs = epochs or math.ceil(r['steps'] / steps_per_epoch)
    steps = epochs * steps_per_epoch
    momentum = min(0.999, max(0.99, 1 - 1 / (r['key_memory_share'] * steps)))
    values = dict(batch_size=batch, lr=round(r['lr_per_64'] * batch / 64, 6), queue_size=queue, topk=topk, epochs=epochs,
                  schedule=[max(1, round(r['drop_at'] * epochs))], momentum_key=round(momentum, 4))
    why = {'batch_size': f'the largest power of two up to {r["max_batch"]} that makes {r["clips_per_batch"]} batches '
                         f'of the {clips} clips',
           'lr': f'{r["lr_per_64"]:g} per 64 clips of batch (the linear scaling rule)',
           'queue_size': f'at most {r["queue_share"]:.2g} of the clips, a multiple of the global batch {glob}',
           'topk': f'{r["topk_share"]:g} of the queue',
           'epochs': f'about {r["steps"]} steps of {steps_per_epoch} per epoch',
           'schedule': f'the lr drop at {r["drop_at"]:g} of the epochs',
           'momentum_key': f'a key memory of {r["key_memory_share"]:.3g} of the {steps} steps, within 0.99-0.999'}
    if median_length:
        frames = int(min(r['max_frames'], max(r['min_frames'], 4 * round(median_length / 4))))
        values.update(frames=frames, min_crop=frames // 2)
        why['frames'] = f'the median clip length {median_length:g}, rounded to 4, within {r["min_frames"]}-{r["max_frames"]}'
        why['min_crop'] = 'half the frames'
    return values, why


def is_small(kind, train_clips=None):
    """Whether a dataset of ``kind`` whose training set has ``train_clips`` clips (``None``: not
    known) trains with the small-data preset."""
    return kind in SMALL_DATASETS and (kind != 'custom' or train_clips is None or train_clips < SMALL_DATA_CLIPS)


def default_stream(dataset, benchmark, encoded=True, protocol=None):
    """The streams an evaluation of ``dataset``'s ``benchmark`` takes without ``--stream``, and why.
    On a small dataset (:func:`is_small`) an encoder's (``encoded``) streams are fused, for kNN with
    the coordinates too, for a linear head (``protocol``) not: chosen on the validation splits
    (benchmarks/RESULTS.md, "The coordinates as streams"). Else the joint stream, as the published
    protocols evaluate. ``protocol`` ``features`` (extract_features.py, retrieve.py): every stream
    the checkpoint has, fused, wherever."""
    if protocol == 'features':
        return 'all', 'every stream fused: the features of extract_features.py and retrieve.py'
    if encoded and is_small(dataset.kind, dataset.sizes.get(benchmark, {}).get('train')):
        if protocol == 'linear':
            return 'all', 'small data: the learned streams fused (docs/protocols.md)'
        return 'all+raw', 'small data: the learned streams and the coordinates fused (docs/protocols.md)'
    return 'joint', 'the published protocols'


def default_choice(dataset, benchmark=None):
    """The method and encoder a run on ``dataset`` (a :class:`feeder.info.DatasetInfo`, or a kind
    by name) takes when the command line names neither, and why: ``models.SMALL_DEFAULT`` on a small
    dataset (its training set for ``benchmark`` decides a custom one's size), else the default
    method with the encoder it was published with."""
    kind = dataset if isinstance(dataset, str) else dataset.kind
    clips = None if isinstance(dataset, str) else dataset.sizes.get(benchmark, {}).get('train')
    if is_small(kind, clips):
        return SMALL_DEFAULT['method'], SMALL_DEFAULT['encoder'], f'small-data default: {SMALL_DEFAULT["why"]}'
    return DEFAULT_METHOD, default_encoder(DEFAULT_METHOD), 'published recipe'


def default_encoder(method=None):
    """The encoder ``method`` was published with."""
    return method_class(method).ENCODER or PRETRAIN['encoder']


def reads(encoder, method=None):
    """The settings a run of ``method`` with ``encoder`` reads: the recipe's, the encoder's and the
    method's own (what its settings and ``args.json`` hold, and nothing else)."""
    return set(PRETRAIN) | {s.name for s in ENCODERS[encoder].SETTINGS} | \
        {s.name for s in getattr(method_class(method), 'SETTINGS', ())}


def recipe(dataset, encoder=None, method=None, benchmark=None, world_size=1, recorded=None, train_clips=None,
           median_length=None, **given):
    """The defaults of a pretraining run and where each comes from: ``(values, sources)``, two dicts
    by setting name, a source being a short phrase ("published recipe", "small-data rule: ...").
    Only the settings the run reads (:func:`reads`) are there.

    The layers, each over the one before: the published recipe; the encoder's and the method's
    setting defaults; the encoder's ``RECIPE`` (default encoder: the one ``method`` was published
    with); the small-data preset (for ``SMALL_DATASETS``; a custom dataset below ``SMALL_DATA_CLIPS``
    training clips) and the encoder's ``SMALL_RECIPE``; the dataset's recipe; the small-data rules
    for a training set of known size, but for what the small-data rows fix (``given``: the batch size
    and epochs a command line fixes, which the rest follows, as it follows a row's); the method's
    ``RECIPE`` with its ``DATASET_RECIPES`` row, whose values say what the method is (a top-k that
    counts mined positives stays, where the rules scale one of distilled neighbours), on small data its
    ``SMALL_RECIPE`` where it has one; then, for a checkpoint's run, what it records (``recorded``,
    its args, with their sources where it records them), else ``UNRECORDED_DEFAULTS``.
    ``dataset``: a :class:`feeder.info.DatasetInfo`, whose description gives the training set's size
    and median length for ``benchmark`` where it was prepared here, or a dataset's kind by name;
    ``train_clips`` and ``median_length`` given win."""
    kind = dataset if isinstance(dataset, str) else dataset.kind
    if not isinstance(dataset, str) and benchmark is not None:
        train_clips = train_clips or dataset.sizes.get(benchmark, {}).get('train')
        median_length = median_length or (dataset.lengths.get(benchmark, {}).get('train') or {}).get('median')
    cls = method_class(method)
    method = method or DEFAULT_METHOD
    encoder = encoder or default_encoder(method)
    encoder_cls, read = ENCODERS[encoder], reads(encoder, method)
    values, sources = {}, {}

    def layer(changes, source):
        changes = {k: v for k, v in changes.items() if k in read}
        values.update(changes)
        sources.update(dict.fromkeys(changes, source))

    layer(PRETRAIN, 'published recipe')
    layer({s.name: s.default for s in encoder_cls.SETTINGS}, f'published recipe ({encoder}\'s defaults)')
    layer({s.name: s.default for s in getattr(cls, 'SETTINGS', ())}, f'published recipe ({method}\'s defaults)')
    layer(encoder_cls.RECIPE, f'encoder recipe ({encoder})')
    small = is_small(kind, train_clips)
    small_encoder = encoder_cls.SMALL_RECIPE if small else {}
    if small:
        layer(SMALL, 'small-data preset')
        layer(small_encoder, f'small-data preset ({encoder})')
    layer(DATASET_RECIPES.get(kind, {}), f'dataset recipe ({kind})')
    own = {**getattr(cls, 'RECIPE', {}), **getattr(cls, 'DATASET_RECIPES', {}).get(kind, {})}
    own_source = f'method recipe ({method})'
    if small and getattr(cls, 'SMALL_RECIPE', None) is not None:
        own, own_source = cls.SMALL_RECIPE, f'small-data preset ({method})'
    own = {k: v for k, v in own.items() if k in read}
    if small and train_clips:
        # what a row fixes stays, and the rules follow its batch and epochs as they follow the command line's
        fixed = {**small_encoder, **own}
        ruled, why = small_data_rules(train_clips, median_length, world_size,
                                      **{k: given.get(k) or fixed.get(k) for k in ('batch_size', 'epochs')})
        for key in ruled.keys() - fixed.keys():
            layer({key: ruled[key]}, f'small-data rule: {why[key]}')
    layer(own, own_source)
    layer({'encoder': encoder}, f'method recipe ({method})' if cls.ENCODER else 'published recipe')
    if recorded is not None:
        layer({k: v for k, v in UNRECORDED_DEFAULTS.items() if k in values}, 'what the code did before the setting')
        kept = recorded.get('sources') or {}
        for key in values:
            if recorded.get(key) is not None:
                values[key], sources[key] = recorded[key], kept.get(key, 'checkpoint')
    return values, sources


# Evaluation protocols: frozen-feature linear classification and fine-tuning.
LINEAR = dict(epochs=80, optimizer='sgd', lr=0.1, schedule=[50, 70], cos=False, min_lr=0.0, warmup_epochs=0,
              momentum=0.9, betas=PRETRAIN['betas'], weight_decay=0.0, batch_size=64, seed=PRETRAIN['seed'],
              batchnorm=False, fusion='softmax', fusion_weights=None, whole_clips=False, rotate_train=0.0)
FINETUNE = dict({k: v for k, v in LINEAR.items() if k not in ('batchnorm', 'fusion', 'fusion_weights')}, lr=0.01,
                head='linear', drop_path=0.0, label_smoothing=0.0, layer_decay=1.0)
KNN = dict(batch_size=256)
# Fine-tuning with few labels (docs/protocols.md, "Few labels"): where the batch is the recipe's, it
# is halved (to no less than ``smallest``) until the labelled clips make ``batches`` batches, so that
# a handful of labelled clips still take several steps an epoch. Chosen on the validation splits
# at 10% of the labels: against batch 64, from scratch +6.4 and +4.5 points, a head on the
# coordinates +3.2 and -1.3, the pretrained encoders +0.8 and 0.0 (benchmarks/RESULTS.md, "Across
# datasets").
FEW_LABELS = dict(batches=4, smallest=4)


def few_labels_batch(clips, batch_size):
    """The fine-tuning batch of ``clips`` labelled clips where the recipe's is ``batch_size``, and
    why (:data:`FEW_LABELS`)."""
    batch = batch_size
    while batch // 2 >= FEW_LABELS['smallest'] and clips < FEW_LABELS['batches'] * batch:
        batch //= 2
    return batch, (f'few-labels rule: the recipe\'s {batch_size} halved until the {clips} labelled clips make '
                   f'{FEW_LABELS["batches"]} batches, to no less than {FEW_LABELS["smallest"]}')
