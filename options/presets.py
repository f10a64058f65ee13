"""The one table of recipes: every default of pretraining and evaluation, per encoder and dataset
(docs/protocols.md). What the datasets themselves are lives in ``feeder/info.py``."""

# Published CMD pretraining recipe with the GRU encoder.
PRETRAIN = dict(
    encoder='gru', epochs=451, schedule=[351], lr=0.01, momentum=0.9, weight_decay=1e-4,
    batch_size=64, frames=64, min_crop=None, queue_size=16384, topk=8192, contrast_t=0.07,
    teacher_t=0.05, student_t=0.1, momentum_key=0.999, cmd_weight=1.0, mlp=True,
    hidden_size=1024, num_layers=3, gru_mode='published', gru_pool='last', dim=128, save_every=10, seed=42,
    shear=1.0, corruption=0.5, rotation=0.0)

# Per-encoder changes to that recipe: ST-GCN as CrosSCLR/AimCLR train it.
ENCODER_RECIPES = {
    'gru': {},
    'stgcn': dict(frames=50, lr=0.1, batch_size=128, epochs=300, schedule=[250], queue_size=32768),
}

# Per-dataset changes, applied last. PKU-MMD II trains longer. The small datasets use settings
# chosen by measurement on NW-UCLA's validation benchmark (docs/protocols.md, "Small datasets"):
# the published sizes do not learn there.
SMALL = dict(hidden_size=128, frames=32, min_crop=16, lr=0.05, queue_size=256, topk=128, epochs=150,
             schedule=[120], save_every=25, gru_mode='bidirectional', momentum_key=0.99, corruption=0.0)
DATASET_RECIPES = {
    'pku2': dict(epochs=1001, schedule=[801]),
    'ucla': dict(SMALL),
    'synthetic': dict(SMALL, batch_size=32, epochs=60, schedule=[50], save_every=20),
}


# What a checkpoint that does not record one of these settings was trained with: the code then
# had no such setting and did what the published method does.
UNRECORDED_DEFAULTS = dict(gru_mode='published', gru_pool='last', shear=1.0, corruption=0.5, rotation=0.0)

# A custom dataset trains with the small-data preset below this many training clips, else with
# the published recipe.
SMALL_DATA_CLIPS = 5000


def pretrain_recipe(dataset, encoder, train_clips=None):
    """Defaults for ``pretrain.py``: published recipe < encoder recipe < dataset recipe (for a
    custom dataset: the small-data preset below ``SMALL_DATA_CLIPS`` training clips)."""
    recipe = dict(PRETRAIN)
    recipe.update(ENCODER_RECIPES[encoder])
    if dataset == 'custom':
        recipe.update(SMALL if train_clips is None or train_clips < SMALL_DATA_CLIPS else {})
    recipe.update(DATASET_RECIPES.get(dataset, {}))
    return recipe


def recorded_recipe(recipe, recorded):
    """``recipe`` for a checkpoint's run: the settings it records (``recorded``, its args) where
    not ``None``, else ``UNRECORDED_DEFAULTS``, else the recipe's own."""
    out = dict(recipe, **{k: v for k, v in UNRECORDED_DEFAULTS.items() if k in recipe})
    out.update({k: recorded[k] for k in recipe if recorded.get(k) is not None})
    return out


def dataset_recipe(dataset, encoder, benchmark):
    """:func:`pretrain_recipe` of a :class:`feeder.info.DatasetInfo` and one of its benchmarks,
    whose training clips its description records where it was prepared here."""
    return pretrain_recipe(dataset.kind, encoder, dataset.sizes.get(benchmark, {}).get('train'))


# Evaluation protocols: frozen-feature linear classification and fine-tuning.
LINEAR = dict(epochs=80, lr=0.1, schedule=[50, 70], momentum=0.9, weight_decay=0.0, batch_size=64,
              seed=PRETRAIN['seed'])
FINETUNE = dict(LINEAR, lr=0.01)
KNN = dict(batch_size=256)
