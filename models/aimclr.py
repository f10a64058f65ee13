"""AimCLR (Guo et al., AAAI 2022): MoCo on one modality (or each of several) with a third,
"extreme" view whose query, and its copy with the most salient features dropped (EADM), learn the
normal query's distribution over the key and the queue (D3M); from ``mining_epoch`` on, the queue
entries nearest to each query are positives too (NNM). docs/method.md, "Methods"."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from feeder.augment import random_axis_mask, random_axis_rotation, random_blur, random_flip, random_noise
from models.losses import distribution_matching, multi_positive_nce, neighbour_positives, topk_accuracy
from models.moco import (INIT, MINING_SETTINGS, MOCO_SETTINGS, STGCN_DATA, STGCN_LINEAR, MoCo, SkeletonCLRConfig,
                         Mining, check_topk, processor_init, skeletonclr)


def attention_drop(feature_map, keep=0.7, eps=1e-4):
    """EADM on an encoder's last map (N, C, T, V): the energy attention
    ``A = sigmoid((F - mu)^2 / (4 (var + eps)) + 1/2)`` per sample and channel (``var`` over
    T * V - 1), then the joints whose mean attention over (C, T) reaches ``keep`` dropped, then every
    element whose attention reaches ``keep``; after each mask the map is scaled by entries / kept,
    counted over the batch. The masks carry no gradient."""
    with torch.no_grad():
        _, _, t, v = feature_map.shape
        centred = (feature_map - feature_map.mean(dim=(2, 3), keepdim=True)).pow(2)
        variance = centred.sum(dim=(2, 3), keepdim=True) / max(t * v - 1, 1)
        attention = torch.sigmoid(centred / (4 * (variance + eps)) + 0.5)
        joints = (attention.mean(dim=(1, 2)) < keep).to(feature_map.dtype)
        elements = (attention < keep).to(feature_map.dtype)
        joints *= joints.numel() / joints.sum().clamp(min=1)
        elements *= elements.numel() / elements.sum().clamp(min=1)
    return feature_map * joints[:, None, None, :] * elements


def extreme(augment, clips, num_frames, draws=None):
    """AimCLR's strong view recipe: SkeletonCLR's view, then a flip of the body's sides (``mirror``:
    the layout's joint permutation; none, no flip), a rotation, noise, a temporal blur (as
    published not normalised; with the ``fix_defects`` option normalised, docs/method.md
    "Published defects") and an axis mask (:func:`feeder.augment.random_flip` to
    :func:`feeder.augment.random_axis_mask`). ``draws``: any of ``start``, ``shear``, ``flip``,
    ``angles``, ``noise``, ``sigmas``, ``blur``, ``axis`` (each the parameter of that name of the
    function it goes to), where given."""
    draws = draws or {}
    x = skeletonclr(augment, clips, num_frames, draws)
    if augment.mirror is not None:
        x = random_flip(x, augment.mirror, flip=draws.get('flip'))
    c = augment.coordinates
    x = random_axis_rotation(x, coordinates=c, angles=draws.get('angles'))
    x = random_noise(x, coordinates=c, noise=draws.get('noise'))
    x = random_blur(x, coordinates=c, normalise=bool(augment.options.get('fix_defects')), sigmas=draws.get('sigmas'),
                    blur=draws.get('blur'))
    return random_axis_mask(x, coordinates=c, axis=draws.get('axis'))


@dataclass(frozen=True)
class AimCLRConfig(SkeletonCLRConfig):
    topk: int
    fix_defects: bool


class AimCLR(Mining, MoCo):
    """Views: the query's and the key's (SkeletonCLR's), then the extreme one. Per modality the loss
    is InfoNCE on ``l = [q.k, q.Q] / t`` (from ``mining_epoch`` on: the mean ``-log softmax(l)`` over
    the key and the ``topk`` queue neighbours of q, of the extreme query and of its dropped copy),
    plus half the sum of the D3M cross-entropies of the extreme and the dropped extreme query's
    distributions against ``softmax(l)``. Only the keys enter the queue. The encoder must expose its
    last map (``feature_map``/``pool``, models/encoder.py): ST-GCN does. Initialised as SkeletonCLR
    (:func:`models.moco.processor_init`).

    As published, D3M takes the log of a softmax and the extreme view's blur is not normalised;
    ``fix_defects`` takes a log-softmax and a normalised blur (docs/method.md, "Published defects";
    the blur is the view's, :func:`extreme`)."""

    VIEWS = (skeletonclr, skeletonclr, extreme)
    CONFIG = AimCLRConfig
    SETTINGS = MOCO_SETTINGS + MINING_SETTINGS + (INIT,)
    # one modality with SkeletonCLR's views and an extreme one, one mined neighbour per query
    ENCODER, RECIPE, DATASET_RECIPES = 'stgcn', dict(modalities=['joint'], shear=0.5, topk=1), STGCN_DATA
    SMALL_RECIPE = dict(RECIPE, init='pytorch')
    # a head per stream, and the three-stream ensemble of ensemble_ntu_cs.py: 0.6 joint + 0.4 motion
    # + 0.6 bone logits
    PROTOCOLS = {'linear': dict(STGCN_LINEAR, fusion='logits-weighted', fusion_weights=[0.6, 0.4, 0.6])}
    PUBLISHED = 'Levigty/AimCLR@6cd7376'
    KEEP = 0.7  # EADM's threshold in the published code (docs/method.md)

    def __init__(self, make_encoder, layout, *, topk, mining_epoch, fix_defects, init, **moco):
        check_topk(topk, moco['queue_size'])
        super().__init__(make_encoder, layout, **moco)
        encoder = next(iter(self.encoder_q.values()))
        if not (hasattr(encoder, 'feature_map') and hasattr(encoder, 'pool')):
            raise ValueError(f'aimclr drops features of the encoder\'s last map, which {type(encoder).__name__} does '
                             'not expose (feature_map and pool, docs/method.md "Encoders"); use --encoder stgcn')
        self.topk, self.mining_epoch, self.fix_defects = topk, mining_epoch, fix_defects
        if init == 'published':
            processor_init(self)

    def step_state(self):
        return self.epoch >= self.mining_epoch  # mining or not

    def extreme(self, encoder, view):
        """Normalised embeddings of the extreme view, and of the same with EADM on the last map."""
        feature_map, persons = encoder.feature_map(view)
        return tuple(F.normalize(encoder.fc(encoder.pool(f, persons)), dim=1)
                     for f in (feature_map, attention_drop(feature_map, self.KEEP)))

    def forward(self, views):
        view_q, view_k, view_e = views
        q, k = self.embed(view_q, view_k)
        queue = self.queue.clone()
        total, stats = 0, {}
        for i, m in enumerate(self.modalities):
            e, ed = self.extreme(self.encoder_q[m], self.inputs(view_e, m))
            logits, logits_e, logits_ed = (torch.cat([(z * k[m]).sum(dim=1, keepdim=True), z @ queue[i]], dim=1)
                                           / self.contrast_t for z in (q[m], e, ed))
            if self.epoch < self.mining_epoch:
                nce = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
            else:
                positives = neighbour_positives(queue.shape[2], logits[:, 1:], logits_e[:, 1:], logits_ed[:, 1:],
                                                topk=self.topk)
                nce = multi_positive_nce(logits, positives)
            d3m = sum(distribution_matching(logits, z, self.fix_defects) for z in (logits_e, logits_ed)) / 2
            total = total + nce + d3m
            stats.update({f'infonce_{m}': nce.detach(), f'd3m_{m}': d3m.detach(), f'acc_{m}': topk_accuracy(logits)})
        self._dequeue_and_enqueue(torch.stack([k[m] for m in self.modalities]))
        return total, stats
