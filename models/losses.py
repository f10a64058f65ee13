"""The two objectives of CMD (docs/method.md, "The objective") as plain functions."""
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


def topk_accuracy(scores, targets=None, k=1):
    """Share of rows whose target is within the top ``k`` scores, in percent (a tensor). The
    targets default to index 0: the positive of contrastive logits."""
    with torch.no_grad():
        top = scores.topk(k, dim=1).indices
        target = 0 if targets is None else targets.to(top.device)[:, None]
        return (top == target).any(dim=1).float().mean() * 100
