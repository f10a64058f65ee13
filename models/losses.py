"""The methods' objectives as plain functions: MoCo's InfoNCE and CMD's distillation
(docs/method.md, "The objective"), CrosSCLR's cross-modal positives, AimCLR's distribution matching
and mined positives, MAMP's masked prediction."""
import torch
import torch.nn.functional as F


def infonce(q, k, queue, temperature):
    """MoCo InfoNCE. ``q``, ``k``: (N, D) normalised; ``queue``: (D, K).

    Returns the loss, the logits ``[q.k, q.Q] / t`` (positive at index 0) and the raw
    query-queue similarities ``q.Q`` (N, K) that the distillation reuses.
    """
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ queue
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(len(q), dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target), logits, negative


def neighbour_kl(student_sim, teacher_values, teacher_index, teacher_t, student_t):
    """KL(teacher || student) over the teacher's top-k queue neighbours, averaged over the batch.

    ``teacher_values``/``teacher_index`` are the teacher's top-k similarities and their queue
    positions; the student's similarities to the same positions are gathered from
    ``student_sim`` (N, K).
    """
    student = F.log_softmax(student_sim.gather(1, teacher_index) / student_t, dim=1)
    teacher = F.softmax(teacher_values / teacher_t, dim=1)
    return F.kl_div(student, teacher, reduction='batchmean')


def cmd_loss(student_sims, teacher_sims, topk, teacher_t, student_t):
    """Cross-modal mutual distillation: every modality teaches every other one.

    ``student_sims[m]`` is q^m . Q^m (with gradient), ``teacher_sims[m]`` is k^m . Q^m (without).
    Sums the KL terms over all ordered (teacher, student) pairs of distinct modalities.
    """
    total = next(iter(student_sims.values())).new_zeros(())
    for teacher, sim in teacher_sims.items():
        values, index = sim.detach().topk(topk, dim=1)
        for student, student_sim in student_sims.items():
            if student != teacher:
                total = total + neighbour_kl(student_sim, values, index, teacher_t, student_t)
    return total


def cross_positive_nce(q, k, sims, partner_sims, topk, temperature):
    """CrosSCLR's loss of one modality with positives mined in another (Li et al., CVPR 2021).

    ``q``, ``k``: (N, D) normalised query and key of modality u; ``sims`` = q_u . Q_u and
    ``partner_sims`` = q_v . Q_v, (N, K). The logits are ``[q.k, s_u, s_u * s_v] / t`` (the last
    block the context); the positives are the key and, in both other blocks, the queue entries of
    v's ``topk`` nearest neighbours. Returns the batch mean of the mean of ``-log softmax`` over
    the positives.
    """
    index = partner_sims.topk(topk, dim=1).indices
    size = sims.shape[1]
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), sims, sims * partner_sims], dim=1) / temperature
    log_prob = F.log_softmax(logits, dim=1)
    positives = torch.cat([log_prob[:, :1], log_prob.gather(1, 1 + index), log_prob.gather(1, 1 + size + index)], 1)
    return -positives.mean(dim=1).mean()


def distribution_matching(target_logits, logits, log_softmax=True):
    """AimCLR's D3M term: the cross-entropy ``H(p, p')`` of ``p = softmax(target_logits)`` (held fixed)
    and ``p' = softmax(logits)``, averaged over the batch. ``log_softmax``: ``log p'`` computed as a
    log-softmax; without it as the log of the softmax, as published, which underflows to ``-inf``
    when a probability does (docs/method.md, "Published defects")."""
    target = F.softmax(target_logits.detach(), dim=1)
    log_p = F.log_softmax(logits, dim=1) if log_softmax else torch.log(F.softmax(logits, dim=1))
    return -(target * log_p).sum(dim=1).mean()


def neighbour_positives(size, *sims, topk=1):
    """The positives of AimCLR's nearest-neighbour mining over logits ``[q.k, q.Q]``: a (N, 1 + K)
    0/1 mask holding the key (index 0) and each of ``sims``' (N, K) ``topk`` nearest queue entries,
    each entry once."""
    mask = sims[0].new_zeros(len(sims[0]), 1 + size)
    mask[:, 0] = 1
    for sim in sims:
        mask.scatter_(1, 1 + sim.detach().topk(topk, dim=1).indices, 1.0)
    return mask


def multi_positive_nce(logits, positives):
    """``-log softmax(logits)`` averaged over each row's ``positives`` (a 0/1 mask), then over the
    batch."""
    return -((F.log_softmax(logits, dim=1) * positives).sum(dim=1) / positives.sum(dim=1)).mean()


def topk_accuracy(scores, targets=None, k=1):
    """Share of rows whose target is within the top ``k`` scores, in percent (a tensor). The
    targets default to index 0: the positive of contrastive logits."""
    with torch.no_grad():
        top = scores.topk(k, dim=1).indices
        target = 0 if targets is None else targets.to(top.device)[:, None]
        return (top == target).any(dim=1).float().mean() * 100


def masked_mse(prediction, target, masked):
    """MAMP's (and MAE's) loss: each token's mean squared error over its values, averaged over the
    tokens where ``masked`` (B, L) is 1 (a weight: 0 for the kept tokens and for samples that
    carry no loss). ``prediction``, ``target``: (B, L, D)."""
    per_token = (prediction - target).pow(2).mean(dim=-1)
    return (per_token * masked).sum() / masked.sum().clamp(min=1)
