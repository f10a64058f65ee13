"""The published training steps of SkeletonCLR, CrosSCLR (phase 1), AimCLR (phase 1) and MAMP,
written out operation for operation as their published code runs them (LinguoLi/CrosSCLR@792b70c,
Levigty/AimCLR@6cd7376, maoyunyao/MAMP@09e6252; docs/method.md), on the weights of our models: the
"before" side of ``benchmarks/method_speed.py``. ``tests/test_published.py`` checks our models
against values the published code itself computed; these ports only time its way of computing.
"""
import math

import torch
import torch.nn.functional as F

# CrosSCLR's bone pairs, 1-based, as its model lists them
NTU_BONES = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
             (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21),
             (22, 23), (23, 8), (24, 25), (25, 12)]


def stgcn_trunk(encoder, x):
    """net/st_gcn.py Model.forward up to the last block on an :class:`models.stgcn.STGCNEncoder`'s
    weights: the input BatchNorm over (V C) per person, then each block as st_gcn.forward runs it,
    its dropout PyTorch's in place."""
    n, c, t, v, m = x.size()
    x = x.permute(0, 4, 3, 1, 2).contiguous().view(n * m, v * c, t)
    x = encoder.data_bn(x)
    x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous().view(n * m, c, t, v)
    for block, importance in zip(encoder.blocks, encoder.edge_importance):
        res = 0 if block.residual is None else block.residual(x)
        a = encoder.A * importance
        y = block.gcn.conv(x)
        b, kc, t, v = y.size()
        y = torch.einsum('nkctv,kvw->nctw', (y.view(b, block.gcn.kernels, kc // block.gcn.kernels, t, v), a))
        bn1, relu, conv, bn2, dropout = block.tcn
        y = bn2(conv(relu(bn1(y.contiguous()))))
        y = F.dropout(y, dropout.p, dropout.training, inplace=True)
        x = F.relu(y + res)
    return x, n, m


def stgcn_pool(encoder, x, n, m):
    x = F.avg_pool2d(x, x.size()[2:])
    x = x.view(n, m, -1, 1, 1).mean(dim=1)
    return encoder.fc(x.view(x.size(0), -1))


def stgcn_forward(encoder, x):
    return stgcn_pool(encoder, *stgcn_trunk(encoder, x))


@torch.no_grad()
def momentum_update(encoder_q, encoder_k, m):
    for param_q, param_k in zip(encoder_q.parameters(), encoder_k.parameters()):
        param_k.data = param_k.data * m + param_q.data * (1. - m)


def contrast(q, k, queue, t):
    l_pos = torch.einsum('nc,nc->n', [q, k]).unsqueeze(-1)
    l_neg = torch.einsum('nc,ck->nk', [q, queue.clone().detach()])
    return torch.cat([l_pos, l_neg], dim=1) / t


def motion_and_bone(x):
    motion = torch.zeros_like(x)
    motion[:, :, :-1, :, :] = x[:, :, 1:, :, :] - x[:, :, :-1, :, :]
    bone = torch.zeros_like(x)
    for v1, v2 in NTU_BONES:
        bone[:, :, :, v1 - 1, :] = x[:, :, :, v1 - 1, :] - x[:, :, :, v2 - 1, :]
    return {'joint': x, 'motion': motion, 'bone': bone}


class PublishedMoCoStep:
    """One step of SkeletonCLR (one modality) or CrosSCLR (three, phase 1) as the published
    processors take it, on the encoders and queues of ``model`` (a :class:`models.moco.MoCo`, its
    queue pointer kept in a Python int as the published model keeps it in a buffer it reads back),
    with ``torch.optim.SGD`` as the published processor builds it."""

    def __init__(self, model, lr=0.1):
        self.model, self.ptr = model, 0
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=False, weight_decay=1e-4)

    def __call__(self, views):
        model = self.model
        im_q, im_k = views
        inputs_q = motion_and_bone(im_q) if len(model.modalities) > 1 else {'joint': im_q}
        inputs_k = motion_and_bone(im_k) if len(model.modalities) > 1 else {'joint': im_k}
        q = {s: F.normalize(stgcn_forward(model.encoder_q[s], inputs_q[s]), dim=1) for s in model.modalities}
        with torch.no_grad():
            for s in model.modalities:
                momentum_update(model.encoder_q[s], model.encoder_k[s], model.momentum_key)
            k = {s: F.normalize(stgcn_forward(model.encoder_k[s], inputs_k[s]), dim=1) for s in model.modalities}
        loss = 0
        for i, s in enumerate(model.modalities):
            logits = contrast(q[s], k[s], model.queue[i], model.contrast_t)
            labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            with torch.no_grad():
                model.queue[i][:, self.ptr:self.ptr + len(k[s])] = k[s].T
            loss = loss + F.cross_entropy(logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.ptr = (self.ptr + len(im_q)) % model.queue.shape[2]
        return loss.detach()


def simam_drop(x, keep_prob=0.7, e_lambda=1e-4):
    """AimCLR's net/att_drop.py Simam_Drop: the energy attention, the joints dropped, then the
    elements, each mask followed by its rescale, as the published functions compute them."""
    b, c, h, w = x.size()
    n = w * h - 1
    x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
    y = x_minus_mu_square / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + e_lambda)) + 0.5
    attention = torch.sigmoid(y)
    # DropBlock_Ske: whole joints
    input_abs = attention.mean(dim=1).mean(dim=1).detach()  # (b, w)
    mask = (input_abs < keep_prob).float()
    x = x * mask.view(b, 1, 1, w) * mask.numel() / mask.sum()
    # DropBlockT_1d on (b, c * w, h): single elements
    input_abs = attention.permute(0, 1, 3, 2).contiguous().view(b, c * w, h).detach()
    mask = (input_abs < keep_prob).float()
    x = x.permute(0, 1, 3, 2).contiguous().view(b, c * w, h)
    x = x * mask * mask.numel() / mask.sum()
    return x.view(b, c, w, h).permute(0, 1, 3, 2)


class PublishedAimCLRStep(PublishedMoCoStep):
    """One step of AimCLR (phase 1) as its published processor takes it: the query, the extreme
    query and its dropped copy through the query encoder, the keys, NCE and D3M with the log of a
    softmax."""

    def __call__(self, views):
        model = self.model
        im_q, im_k, im_e = views
        encoder_q, encoder_k = model.encoder_q['joint'], model.encoder_k['joint']
        q = stgcn_forward(encoder_q, im_q)
        trunk, n, m = stgcn_trunk(encoder_q, im_e)
        q_e = stgcn_pool(encoder_q, trunk, n, m)
        q_ed = stgcn_pool(encoder_q, simam_drop(trunk), n, m)
        q, q_e, q_ed = (F.normalize(z, dim=1) for z in (q, q_e, q_ed))
        with torch.no_grad():
            momentum_update(encoder_q, encoder_k, model.momentum_key)
            k = F.normalize(stgcn_forward(encoder_k, im_k), dim=1)
        logits = contrast(q, k, model.queue[0], model.contrast_t)
        p_e = torch.softmax(contrast(q_e, k, model.queue[0], model.contrast_t), dim=1)
        p_ed = torch.softmax(contrast(q_ed, k, model.queue[0], model.contrast_t), dim=1)
        target = torch.softmax(logits.clone().detach(), dim=1).detach()
        with torch.no_grad():
            model.queue[0][:, self.ptr:self.ptr + len(k)] = k.T
        loss = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
        loss = loss + (-torch.mean(torch.sum(torch.log(p_e) * target, dim=1))
                       - torch.mean(torch.sum(torch.log(p_ed) * target, dim=1))) / 2
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.ptr = (self.ptr + len(im_q)) % model.queue.shape[2]
        return loss.detach()


def published_attention(attention, x):
    """model_mamp/transformer.py Attention: the full attention matrix, materialised."""
    b, n, c = x.shape
    heads = attention.heads
    qkv = attention.qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
    attn = attn.softmax(dim=-1)
    x = (attn @ v).transpose(1, 2).reshape(b, n, c)
    return attention.proj(x)


def published_block(block, x):
    x = x + published_attention(block.attn, block.norm1(x))
    return x + block.mlp(block.norm2(x))


def patchify(x, u):
    nm, t, v, c = x.shape
    x = x.reshape(nm, t // u, u, v, 1, c)
    x = torch.einsum('ntuvpc->ntvupc', x)
    return x.reshape(nm, t // u * v, u * c)


class PublishedMAMPStep:
    """One step of MAMP as main_pretrain.py takes it (model_mamp/transformer.py Transformer.forward
    with mask ratio 0.9 and tau 0.8, then AdamW), on the joint stream's encoder and decoder of
    ``model`` (a :class:`models.mamp.MAMP`)."""

    def __init__(self, model, lr=1e-3):
        self.model = model
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        free = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        self.optimizer = torch.optim.AdamW([{'params': free, 'weight_decay': 0.0},
                                            {'params': decay, 'weight_decay': 0.05}], lr=lr, betas=(0.9, 0.95))

    def __call__(self, views):
        (x,) = views
        encoder, decoder = self.model.encoder['joint'], self.model.decoder['joint']
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 2, 3, 1).contiguous().view(n * m, t, v, c)
        u = encoder.patch
        x_orig = patchify(x, u)
        tokens = encoder.embed(torch.einsum('ntsc->ncts', x))
        tokens = torch.einsum('ncts->ntsc', tokens)
        nm, tp, vp, d = tokens.shape
        tokens = (tokens + encoder.spatial[:, :, :vp] + encoder.temporal[:, :tp]).reshape(nm, tp * vp, d)
        length = tp * vp
        len_keep = int(length * (1 - self.model.mask_ratio))
        patches = x_orig.reshape(nm, tp, vp, -1)
        motion = torch.zeros_like(patches)
        motion[:, 1:] = torch.abs(patches[:, 1:] - patches[:, :-1])
        motion[:, 0] = motion[:, 1]
        motion = motion.mean(dim=[3]).reshape(nm, length)
        motion = motion / (torch.max(motion, dim=-1, keepdim=True).values * self.model.mask_tau + 1e-10)
        uniform = torch.rand(nm, length, dtype=motion.dtype, device=motion.device)
        noise = torch.log(F.softmax(motion, dim=-1)) - torch.log(-torch.log(uniform + 1e-10) + 1e-10)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        latent = torch.gather(tokens, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([nm, length], device=motion.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        for block in encoder.blocks:
            latent = published_block(block, latent)
        latent = encoder.norm(latent)
        y = decoder.embed(latent)
        mask_tokens = decoder.mask_token.repeat(nm, length - y.shape[1], 1)
        y = torch.cat([y, mask_tokens], dim=1)
        y = torch.gather(y, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, y.shape[2])).view(nm, tp, vp, -1)
        y = (y + decoder.spatial[:, :, :vp] + decoder.temporal[:, :tp]).reshape(nm, length, -1)
        for block in decoder.blocks:
            y = published_block(block, y)
        pred = decoder.head(decoder.norm(y))
        velocity = torch.zeros_like(x)
        velocity[:, :-1] = x[:, 1:] - x[:, :-1]
        target = patchify(velocity, u)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6) ** .5
        loss = ((pred - target) ** 2).mean(dim=-1)
        loss = (loss * mask).sum() / mask.sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def check_same_function(ours, published, views, tolerance=1e-9):
    """Whether one step of ``published`` gives our step's loss (float64 models and views, dropout
    off, the same starting state): what makes the timing a comparison of one function's costs."""
    loss_ours = ours(views)
    loss_published = published(views)
    error = abs(float(loss_ours) - float(loss_published))
    if not error <= tolerance * max(1.0, abs(float(loss_published))) or not math.isfinite(error):
        raise AssertionError(f'the published step and ours differ by {error:.3g} in their loss')
    return error
