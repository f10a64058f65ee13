"""The one table of recipes: every default of pretraining and evaluation, per encoder and dataset
(docs/protocols.md). What the datasets themselves are lives in ``feeder/info.py``; an encoder's
own settings and their defaults live with the encoder (``Encoder.SETTINGS``)."""
import math

from models import method_settings, own_settings

# Published CMD pretraining recipe with the GRU encoder (whose published size is its settings'
# defaults: 3 x 1024, the published chains, the last frame).
PRETRAIN = dict(
    encoder='gru', epochs=451, schedule=[351], lr=0.01, momentum=0.9, weight_decay=1e-4,
    batch_size=64, frames=64, min_crop=None, queue_size=16384, topk=8192, contrast_t=0.07,
    teacher_t=0.05, student_t=0.1, momentum_key=0.999, cmd_weight=1.0, mlp=True,
    dim=128, save_every=10, seed=42, shear=1.0, corruption=0.5, rotation=0.0, modalities=['joint', 'motion', 'bone'],
    optimizer='sgd', cos=False, min_lr=0.0, warmup_epochs=0, betas=[0.9, 0.95], offline_step='none')

# Per-encoder changes to that recipe (an encoder without a row trains with it): ST-GCN as
# CrosSCLR/AimCLR train it.
ENCODER_RECIPES = {
    'stgcn': dict(frames=50, lr=0.1, batch_size=128, epochs=300, schedule=[250], queue_size=32768),
}

# Per-method changes, over the encoder's: each method's published recipe (docs/protocols.md), with
# the encoder it was published with (``--encoder`` chooses another); a method without a row trains
# with the published CMD recipe.
METHOD_RECIPES = {
    'cmd': {},
    # SkeletonCLR (Li et al., CVPR 2021): one stream of MoCo on the quarter-width ST-GCN, whose
    # recipe is ENCODER_RECIPES['stgcn']; its views shear by U(-0.5, 0.5)
    'skeletonclr': dict(encoder='stgcn', modalities=['joint'], shear=0.5),
    # CrosSCLR (the same paper): the three modalities, SkeletonCLR's views, one mined positive per
    # other modality from half the run on (--mining-epoch: published 150 of 300 epochs)
    'crossclr': dict(encoder='stgcn', shear=0.5, topk=1),
    # AimCLR (Guo et al., AAAI 2022): one stream with SkeletonCLR's views and an extreme one, one mined
    # neighbour per query from half the run on (--mining-epoch: published 150 of 300 epochs)
    'aimclr': dict(encoder='stgcn', modalities=['joint'], shear=0.5, topk=1),
    # MAMP (Mao et al., ICCV 2023): the joint stream on the transformer, 120 frames cropped to at least
    # 64, AdamW at an absolute lr of 1e-3 (4 GPUs x 32 clips) warmed up over 20 epochs, then cosine
    'mamp': dict(encoder='transformer', modalities=['joint'], frames=120, min_crop=64, epochs=400, batch_size=128,
                 optimizer='adamw', lr=1e-3, min_lr=5e-4, warmup_epochs=20, cos=True, weight_decay=0.05),
}
# A method's published changes for one dataset, over its row above.
METHOD_DATASET_RECIPES = {
    ('mamp', 'ntu120'): dict(mask_tau=0.75, decoder_depth=5),
    ('mamp', 'pku1'): dict(decoder_depth=5),
    ('mamp', 'pku2'): dict(decoder_depth=5),
    # the ST-GCN methods train and evaluate on their published 50-frame clips (feeder/offline.py)
    **{(method, kind): dict(offline_step='stgcn50') for method in ('skeletonclr', 'crossclr', 'aimclr')
       for kind in ('ntu60', 'ntu120', 'pku1', 'pku2')},
}

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
# SMALL_DATA_CLIPS training clips, and is trained with the published recipe above.
SMALL_DATASETS = ('ucla', 'custom')
SMALL_DATA_CLIPS = 5000
# The small-data sizes of an encoder, over its recipe, and a method's small-data recipe, which
# replaces its published one on small data (the rules give what it leaves); chosen on the
# validation benchmarks like the preset (benchmarks/RESULTS.md, "Small-data presets").
SMALL_ENCODER_RECIPES = {
    # a quarter of the published width, two blocks, and the optimiser transformers train with
    'transformer': dict(width=64, depth=2, heads=4, mlp_ratio=2, optimizer='adamw', lr=1e-3, weight_decay=0.05,
                        warmup_epochs=6, cos=True, min_lr=0.0, epochs=60),
}
SMALL_METHOD_RECIPES = {
    'mamp': dict(modalities=['joint'], width=128, depth=4, heads=4, mlp_ratio=4, decoder_depth=2, batch_size=32,
                 epochs=60, optimizer='adamw', lr=1e-3, min_lr=1e-5, warmup_epochs=10, cos=True, weight_decay=0.05),
}
# What a small dataset pretrains with when the command line names neither a method nor an encoder:
# what learned best on the validation benchmarks (docs/protocols.md, "The default for small data").
SMALL_DEFAULT = dict(method='cmd', encoder='gru',
                     why='CMD with the GRU learned best on NW-UCLA xview_dev and SBU dev, ahead of CMD with the '
                         'transformer and of MAMP (benchmarks/RESULTS.md, "Small-data presets")')

# What a checkpoint that does not record one of these settings was trained with: the code then
# had no such setting and did what the published method does (what its paper describes, for the
# defects that --fix-defects now fixes).
UNRECORDED_DEFAULTS = dict(gru_mode='published', gru_pool='last', shear=1.0, corruption=0.5, rotation=0.0,
                           optimizer='sgd', min_lr=0.0, warmup_epochs=0, fix_defects=True,
                           offline_step='none')

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


def default_choice(dataset, benchmark=None):
    """The method and encoder a run on ``dataset`` (a :class:`feeder.info.DatasetInfo`, or a kind
    by name) takes when the command line names neither, and why: ``SMALL_DEFAULT`` on a small
    dataset (its training set for ``benchmark`` decides a custom one's size), else CMD with the GRU
    as published."""
    kind = dataset if isinstance(dataset, str) else dataset.kind
    clips = None if isinstance(dataset, str) else dataset.sizes.get(benchmark, {}).get('train')
    if is_small(kind, clips):
        return SMALL_DEFAULT['method'], SMALL_DEFAULT['encoder'], f'small-data default: {SMALL_DEFAULT["why"]}'
    return 'cmd', default_encoder('cmd'), 'published recipe'


def default_encoder(method='cmd'):
    """The encoder ``method`` was published with."""
    return METHOD_RECIPES.get(method, {}).get('encoder', PRETRAIN['encoder'])


def recipe(dataset, encoder=None, method='cmd', benchmark=None, world_size=1, recorded=None, train_clips=None,
           median_length=None, **given):
    """The defaults of a pretraining run and where each comes from: ``(values, sources)``, two dicts
    by argument name, a source being a short phrase ("published recipe", "small-data rule: ...").

    The layers, each over the one before: the published recipe with every encoder's setting
    defaults; ``encoder``'s recipe (default: the one ``method`` was published with); the small-data
    preset (for ``SMALL_DATASETS``; a custom dataset below ``SMALL_DATA_CLIPS`` training clips) and
    the encoder's row of ``SMALL_ENCODER_RECIPES``; the dataset's recipe; the small-data rules for a
    training set of known size, but for what the small-data rows fix (``given``: the batch size and
    epochs a command line fixes, which the rest follows, as it follows a row's); the method's recipe,
    whose values say what the method is (CrosSCLR's and AimCLR's top-k counts mined positives, CMD's
    the distilled neighbours), on small data its row of ``SMALL_METHOD_RECIPES`` instead; then, for
    a checkpoint's run, what it records (``recorded``, its args), else
    ``UNRECORDED_DEFAULTS``. ``dataset``: a :class:`feeder.info.DatasetInfo`, whose description gives
    the training set's size and median length for ``benchmark`` where it was prepared here, or a
    dataset's kind by name; ``train_clips`` and ``median_length`` given win."""
    kind = dataset if isinstance(dataset, str) else dataset.kind
    if not isinstance(dataset, str) and benchmark is not None:
        train_clips = train_clips or dataset.sizes.get(benchmark, {}).get('train')
        median_length = median_length or (dataset.lengths.get(benchmark, {}).get('train') or {}).get('median')
    encoder = encoder or default_encoder(method)
    values, sources = {}, {}

    def layer(changes, source):
        values.update(changes)
        sources.update(dict.fromkeys(changes, source))

    layer(PRETRAIN, 'published recipe')
    layer({name: s.default for name, s in own_settings().items()}, 'published recipe (the encoders\' defaults)')
    layer({name: s.default for name, s in method_settings().items()}, 'published recipe (the methods\' defaults)')
    layer(ENCODER_RECIPES.get(encoder, {}), f'encoder recipe ({encoder})')
    small = is_small(kind, train_clips)
    small_encoder = SMALL_ENCODER_RECIPES.get(encoder, {}) if small else {}
    if small:
        layer(SMALL, 'small-data preset')
        layer(small_encoder, f'small-data preset ({encoder})')
    layer(DATASET_RECIPES.get(kind, {}), f'dataset recipe ({kind})')
    own = {**METHOD_RECIPES.get(method, {}), **METHOD_DATASET_RECIPES.get((method, kind), {})}
    own_source = f'method recipe ({method})'
    if small and method in SMALL_METHOD_RECIPES:
        own, own_source = SMALL_METHOD_RECIPES[method], f'small-data preset ({method})'
    own = {k: v for k, v in own.items() if k != 'encoder'}
    if small and train_clips:
        # what a row fixes stays, and the rules follow its batch and epochs as they follow the command line's
        fixed = {**small_encoder, **own}
        ruled, why = small_data_rules(train_clips, median_length, world_size,
                                      **{k: given.get(k) or fixed.get(k) for k in ('batch_size', 'epochs')})
        for key in ruled.keys() - fixed.keys():
            layer({key: ruled[key]}, f'small-data rule: {why[key]}')
    layer(own, own_source)
    layer({'encoder': encoder}, f'method recipe ({method})' if 'encoder' in METHOD_RECIPES.get(method, {})
          else 'published recipe')
    if recorded is not None:
        layer({k: v for k, v in UNRECORDED_DEFAULTS.items() if k in values}, 'what the code did before the setting')
        layer({k: recorded[k] for k in values if recorded.get(k) is not None}, 'checkpoint')
    return values, sources


# Evaluation protocols: frozen-feature linear classification and fine-tuning.
LINEAR = dict(epochs=80, optimizer='sgd', lr=0.1, schedule=[50, 70], cos=False, min_lr=0.0, warmup_epochs=0,
              momentum=0.9, betas=PRETRAIN['betas'], weight_decay=0.0, batch_size=64, seed=PRETRAIN['seed'],
              batchnorm=False, fusion='softmax', fusion_weights=None, whole_clips=False, rotate_train=0.0)
FINETUNE = dict({k: v for k, v in LINEAR.items() if k not in ('batchnorm', 'fusion', 'fusion_weights')}, lr=0.01,
                head='linear', drop_path=0.0, label_smoothing=0.0, layer_decay=1.0)
KNN = dict(batch_size=256)
