"""MoCo over one or more modalities (He et al., CVPR 2020): per modality a query encoder, a
momentum key encoder and a queue of keys. SkeletonCLR (Li et al., CVPR 2021) is MoCo on one
modality with its own views, CrosSCLR adds positives mined across modalities, and CMD
(``models/cmd.py``) adds distillation between modalities (docs/method.md, "Methods")."""
import copy
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from feeder.augment import padded_crop, random_rotation, random_shear
from feeder.modalities import to_modality
from models.checkpoint import RELEASED_SUFFIX, released_encoder_state, strip_module
from models.encoder import FIX_DEFECTS, Setting, StreamEncoder
from models.losses import cross_positive_nce, infonce, topk_accuracy
from models.method import Method
from utils.dist import concat_all_gather


@dataclass(frozen=True)
class MoCoConfig:
    """The settings of the contrastive objective, by the names of the pretraining arguments."""
    modalities: tuple
    dim: int
    queue_size: int
    momentum_key: float
    contrast_t: float

    @classmethod
    def from_dict(cls, values):
        """The config from any mapping holding its fields, e.g. ``vars(args)``."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


# The settings of every MoCo method
MOCO_SETTINGS = (
    Setting('queue_size', int, 16384, 'MoCo methods: the keys in each modality\'s queue'),
    Setting('contrast_t', float, 0.07, 'MoCo methods: the InfoNCE temperature'),
    Setting('momentum_key', float, 0.999, "MoCo methods: the key encoders' momentum"),
)
# How the ST-GCN methods start: their published processors' initialisation, or PyTorch's defaults (their
# small-data preset: with the published one they collapse there, docs/protocols.md "Small datasets")
INIT = Setting('init', str, 'published', "skeletonclr, crossclr, aimclr: published, the processors' initialisation "
               '(weights N(0, 0.02), zero biases); pytorch, the layers\' own defaults (their small-data preset)',
               choices=('published', 'pytorch'))
# CrosSCLR's and AimCLR's mining of positives
MINING_SETTINGS = (
    Setting('topk', int, 1, "crossclr, aimclr: the queue neighbours mined as positives (of each other modality's "
                            'query, or of the query and its extreme views)'),
    Setting('mining_epoch', int, None, 'crossclr, aimclr: the epoch (0-based) from which mined neighbours are '
                                       'positives (default: half the epochs; published 150 of 300)', low=0),
    FIX_DEFECTS,
)


class MoCo(Method):
    """Query encoders, momentum key encoders and one key queue per modality.

    ``encoder_q``/``encoder_k`` are ``ModuleDict``s keyed by modality; ``queue`` is one buffer
    (modalities, dim, K) filled at a shared pointer, so index i of every modality's queue holds the
    same sample (what lets one modality's neighbours be looked up in another's). ``coordinates``:
    how many leading input channels are coordinates (default all; the rest, a confidence, is carried
    into every modality unchanged). Its views: the default ones, the query's and the key's.
    """

    CONFIG = MoCoConfig
    SETTINGS = MOCO_SETTINGS

    def __init__(self, make_encoder, layout, *, modalities, dim, queue_size, momentum_key, contrast_t,
                 coordinates=None):
        super().__init__()
        self.layout, self.modalities, self.coordinates = layout, tuple(modalities), coordinates
        self.momentum_key, self.contrast_t = momentum_key, contrast_t
        self.encoder_q = self.query_encoders(make_encoder)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        self.register_buffer('queue', F.normalize(torch.randn(len(self.modalities), dim, queue_size), dim=1))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))
        self.epoch = 0

    def query_encoders(self, make_encoder):
        """The query encoders, {modality: encoder}; the key encoders start as their copy."""
        return nn.ModuleDict({m: make_encoder() for m in self.modalities})

    @classmethod
    def build(cls, make_encoder, args, dataset, **extra):
        """The model of parsed pretraining ``args`` for ``dataset`` (a :class:`feeder.info.DatasetInfo`);
        ``make_encoder()`` makes one encoder."""
        return cls(make_encoder, dataset.layout, **asdict(cls.CONFIG.from_dict(vars(args))),
                   coordinates=dataset.coordinates, **extra)

    @classmethod
    def problems(cls, args, global_batch):
        """What in the run's settings cannot work for a queue of keys: said before any work starts."""
        out = []
        topk = getattr(args, 'topk', None)
        if topk is not None and topk > args.queue_size:
            out.append(f'--topk {topk} exceeds --queue-size {args.queue_size}')
        if args.queue_size % global_batch:
            out.append(f'--queue-size {args.queue_size} is not a multiple of the global batch {global_batch} '
                       f'(--batch-size {args.batch_size} x {args.world_size} processes)')
        return out

    def encoders(self):
        """The trained encoders, {modality: :class:`models.encoder.StreamEncoder`}: what evaluation
        uses (the query encoders)."""
        return {m: StreamEncoder(e, m, self.layout, self.coordinates) for m, e in self.encoder_q.items()}

    def released_name(self, name):
        """The name of our parameter ``name`` in the authors' released layout: ``encoder_q.motion.X``
        is ``encoder_q_motion.`` and the encoder's released name of ``X``."""
        branch, modality, rest = name.split('.', 2)
        return f'{branch}{RELEASED_SUFFIX[modality]}.{self.encoder_q[modality].released_name(rest)}'

    def released_state_dict(self):
        """The model in the authors' released layout, which CMD, SkeletonCLR, CrosSCLR and AimCLR
        share (``encoder_q``, ``encoder_k_motion``, ``queue_bone``, ``queue_ptr``, ...: docs/checkpoints.md)."""
        state = {}
        for i, m in enumerate(self.modalities):
            suffix = RELEASED_SUFFIX[m]
            for branch, encoders in (('q', self.encoder_q), ('k', self.encoder_k)):
                state.update({f'encoder_{branch}{suffix}.{k}': v for k, v in encoders[m].released_state_dict().items()})
            state[f'queue{suffix}'], state[f'queue_ptr{suffix}'] = self.queue[i].clone(), self.queue_ptr.clone()
        return state

    @torch.no_grad()
    def load_released_state_dict(self, state):
        """Load a whole model in the authors' released layout (:meth:`released_state_dict`)."""
        state = strip_module(state)
        for i, m in enumerate(self.modalities):
            suffix = RELEASED_SUFFIX[m]
            for branch, encoders in (('q', self.encoder_q), ('k', self.encoder_k)):
                sub = released_encoder_state(state, branch, m)
                if not sub:
                    raise KeyError(f'no encoder_{branch}{suffix}.* entries in the released checkpoint')
                missing, unexpected = encoders[m].load_released_state_dict(sub)
                if missing or unexpected:
                    raise KeyError(f'encoder_{branch}{suffix}: missing {missing}, unexpected {unexpected}')
            self.queue[i].copy_(state[f'queue{suffix}'])
        self.queue_ptr.copy_(state[f'queue_ptr{RELEASED_SUFFIX[self.modalities[0]]}'].view(1))

    def inputs(self, view, modality):
        """One modality of a view: what that modality's encoders take."""
        return to_modality(view, modality, self.layout, self.coordinates)

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        k = [p for p in self.encoder_k.parameters()]
        q = [p.detach() for p in self.encoder_q.parameters()]
        # m * k + (1 - m) * q in one pass over the weights
        torch._foreach_lerp_(k, q, 1 - self.momentum_key)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        """``keys``: (modalities, N, dim); all ranks' keys enter, so the queue holds the global batch."""
        keys = concat_all_gather(keys, dim=1)
        batch, size = keys.shape[1], self.queue.shape[2]
        if size % batch:
            raise ValueError(f'queue size {size} is not a multiple of the global batch {batch}')
        # index arithmetic on the device: reading the pointer on the host would stall the GPU
        slots = self.queue_ptr + torch.arange(batch, device=keys.device)
        self.queue.index_copy_(2, slots, keys.transpose(1, 2).to(self.queue.dtype))
        self.queue_ptr.add_(batch).remainder_(size)

    def encode(self, encoders, view):
        """Normalised embeddings {modality: (N, dim)} of one view: each modality's encoder on
        that modality of the clip."""
        return {m: F.normalize(encoders[m](self.inputs(view, m)), dim=1) for m in self.modalities}

    def embed(self, view_q, view_k):
        """Queries of the first view; keys of the second from the key encoders, momentum-updated
        first (no gradient)."""
        q = self.encode(self.encoder_q, view_q)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.encode(self.encoder_k, view_k)
        return q, k

    def contrast(self, q, k, queue):
        """Every modality's InfoNCE: ``(total, stats, student_sims)``, ``stats`` the per-modality
        losses and top-1 contrastive accuracies (detached), ``student_sims[m]`` = q^m . Q^m."""
        stats, total, student_sims = {}, 0, {}
        for i, m in enumerate(self.modalities):
            loss, logits, student_sims[m] = infonce(q[m], k[m], queue[i], self.contrast_t)
            total = total + loss
            stats[f'infonce_{m}'] = loss.detach()
            stats[f'acc_{m}'] = topk_accuracy(logits)
        return total, stats, student_sims

    def objective(self, q, k, queue):
        """The loss of queries ``q`` and keys ``k`` against the queues as they were: ``(total, stats)``."""
        total, stats, _ = self.contrast(q, k, queue)
        return total, stats

    def forward(self, views):
        """One training step's loss on ``(view_q, view_k)``: ``(total, stats)``; the keys then
        enter the queues."""
        q, k = self.embed(*views)
        total, stats = self.objective(q, k, self.queue.clone())
        self._dequeue_and_enqueue(torch.stack([k[m] for m in self.modalities]))
        return total, stats


def check_topk(topk, queue_size):
    if topk > queue_size:
        raise ValueError(f'top-k ({topk}) cannot exceed the queue size ({queue_size})')


class Mining:
    """What the methods that mine neighbours from ``mining_epoch`` on share (CrosSCLR, AimCLR): left
    open, it is half the epochs (published: 150 of 300); a record written before the resolver filled
    it is built with what that rule gives."""

    @classmethod
    def resolve(cls, values):
        if values.get('mining_epoch') is not None:
            return {}
        return {'mining_epoch': (values['epochs'] // 2, 'half the epochs (published 150 of 300)')}

    @classmethod
    def build(cls, make_encoder, args, dataset, **extra):
        values = vars(args)
        start = values.get('mining_epoch')
        start = cls.resolve(values)['mining_epoch'][0] if start is None else start
        return super().build(make_encoder, args, dataset, mining_epoch=start, **extra)


# The ST-GCN methods' published linear protocol (CrosSCLR's config/linear_eval/*.yaml and
# processor/linear_evaluation.py; AimCLR's the same): SGD with momentum 0.9 at lr 3.0 without weight
# decay, batch 128, 100 epochs with the lr divided by 10 at 80, on the whole clips (no crop)
STGCN_LINEAR = dict(epochs=100, optimizer='sgd', lr=3.0, schedule=[80], cos=False, warmup_epochs=0, momentum=0.9,
                    weight_decay=0.0, batch_size=128, whole_clips=True)


def skeletonclr(augment, clips, num_frames, draws=None):
    """SkeletonCLR's view recipe: its padded temporal crop (:func:`feeder.augment.padded_crop`), then
    (with ``rotation``) a random turn, then always a shear of amplitude ``shear`` (its recipe: 0.5).
    ``draws``: the crop's ``start`` and the ``shear`` matrices, where given."""
    draws = draws or {}
    x = padded_crop(clips, num_frames, augment.frames, start=draws.get('start'))
    if augment.rotation:
        x = random_rotation(x, augment.rotation)
    return random_shear(x, augment.shear, augment.coordinates, matrix=draws.get('shear'))


@torch.no_grad()
def processor_init(model):
    """The initialisation of SkeletonCLR's, CrosSCLR's and AimCLR's published processors (their
    ``weights_init``, applied to the whole model after the key encoders were copied, so query and
    key start from different draws): every convolution and linear layer's weight ``N(0, 0.02^2)``
    and bias 0, every BatchNorm's weight ``N(1, 0.02^2)`` and bias 0; running statistics, edge
    importances and queues as they were (docs/method.md, "Methods")."""
    for module in model.modules():
        kind = type(module).__name__
        if any(name in kind for name in ('Conv1d', 'Conv2d', 'Linear')):
            module.weight.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.zero_()
        elif 'BatchNorm' in kind and module.weight is not None:
            module.weight.normal_(1.0, 0.02)
            module.bias.zero_()


# The ST-GCN methods' data as published: their 50-frame clips on NTU and PKU-MMD (feeder/offline.py)
STGCN_DATA = {kind: dict(offline_step='stgcn50') for kind in ('ntu60', 'ntu120', 'pku1', 'pku2')}


@dataclass(frozen=True)
class SkeletonCLRConfig(MoCoConfig):
    init: str


class SkeletonCLR(MoCo):
    """SkeletonCLR (Li et al., CVPR 2021): MoCo on one modality (``--modalities joint``, or motion or
    bone) with its published views (a padded temporal crop, then a shear) and initialisation
    (:func:`processor_init`; docs/method.md). Its recipe: the ST-GCN's, one modality, shear
    ``U(-0.5, 0.5)``."""

    VIEWS = (skeletonclr, skeletonclr)
    CONFIG = SkeletonCLRConfig
    SETTINGS = MOCO_SETTINGS + (INIT,)
    ENCODER, RECIPE, DATASET_RECIPES = 'stgcn', dict(modalities=['joint'], shear=0.5), STGCN_DATA
    SMALL_RECIPE = dict(RECIPE, init='pytorch')
    PROTOCOLS, PUBLISHED = {'linear': STGCN_LINEAR}, 'LinguoLi/CrosSCLR@792b70c'

    def __init__(self, make_encoder, layout, *, init, **moco):
        super().__init__(make_encoder, layout, **moco)
        if init == 'published':
            processor_init(self)


@dataclass(frozen=True)
class CrosSCLRConfig(SkeletonCLRConfig):
    topk: int
    fix_defects: bool


class CrosSCLR(Mining, MoCo):
    """CrosSCLR (Li et al., CVPR 2021): MoCo on each modality with SkeletonCLR's views and
    initialisation; from ``mining_epoch`` on, each modality's loss takes as extra positives the queue
    entries nearest to the sample in every other modality, with the context block
    (``models.losses.cross_positive_nce``).

    As published (docs/method.md, "Published defects"): with an MLP head, the other modalities'
    heads are a Linear and a ReLU before the first modality's head itself (its layers shared), and
    each step momentum-updates every modality's key encoder in turn (so the shared key head three
    times), from ``mining_epoch`` on the motion key encoder alone. ``fix_defects``: a head of its own
    per modality and every key encoder updated once per step, as the paper describes."""

    VIEWS = (skeletonclr, skeletonclr)
    CONFIG = CrosSCLRConfig
    SETTINGS = MOCO_SETTINGS + MINING_SETTINGS + (INIT,)
    # the three modalities, SkeletonCLR's views, one mined positive per other modality (the top-k
    # is fixed here: it counts mined positives, which the small-data rules do not scale)
    ENCODER, RECIPE, DATASET_RECIPES = 'stgcn', dict(shear=0.5, topk=1), STGCN_DATA
    SMALL_RECIPE = dict(RECIPE, init='pytorch')
    # view 'all': one head per stream, trained together on the mean of their logits
    PROTOCOLS = {'linear': dict(STGCN_LINEAR, fusion='logits-mean')}
    PUBLISHED = 'LinguoLi/CrosSCLR@792b70c'


    def __init__(self, make_encoder, layout, *, topk, mining_epoch, fix_defects, init, **moco):
        check_topk(topk, moco['queue_size'])
        self.fix_defects = fix_defects
        super().__init__(make_encoder, layout, **moco)
        self.topk, self.mining_epoch = topk, mining_epoch
        if init == 'published':
            processor_init(self)

    def query_encoders(self, make_encoder):
        encoders = super().query_encoders(make_encoder)
        first = encoders[self.modalities[0]]
        if self.fix_defects or not isinstance(first.fc, nn.Sequential):
            return encoders
        for m in self.modalities[1:]:
            width = first.fc[0].in_features
            encoders[m].fc = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), first.fc)
        return encoders

    def step_state(self):
        return self.epoch >= self.mining_epoch  # mining or not

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        if self.fix_defects:
            return super()._momentum_update_key_encoder()
        mining = self.epoch >= self.mining_epoch and len(self.modalities) > 1
        for m in self.modalities:
            if not mining or m == 'motion':
                torch._foreach_lerp_(list(self.encoder_k[m].parameters()),
                                     [p.detach() for p in self.encoder_q[m].parameters()], 1 - self.momentum_key)

    def objective(self, q, k, queue):
        total, stats, sims = self.contrast(q, k, queue)
        if self.epoch < self.mining_epoch or len(self.modalities) < 2:
            return total, stats
        total = 0
        for i, u in enumerate(self.modalities):
            others = [v for v in self.modalities if v != u]
            loss = sum(cross_positive_nce(q[u], k[u], sims[u], sims[v], self.topk, self.contrast_t)
                       for v in others) / len(others)
            stats[f'cross_{u}'] = loss.detach()
            total = total + loss
        return total, stats
