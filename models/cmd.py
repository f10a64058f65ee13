"""CMD: per-modality MoCo learners that distil neighbourhood structure into each other
(docs/method.md, "The objective")."""
from dataclasses import dataclass

from models.encoder import Setting
from models.losses import cmd_loss
from models.moco import MOCO_SETTINGS, MoCo, MoCoConfig, check_topk


@dataclass(frozen=True)
class CMDConfig(MoCoConfig):
    """The settings of the CMD objective (docs/method.md, "The objective"), by the names of the
    pretraining arguments: MoCo's, and the distillation's."""
    topk: int
    teacher_t: float
    student_t: float
    cmd_weight: float


class CMD(MoCo):
    """:class:`models.moco.MoCo` over the modalities, plus cross-modal mutual distillation: every
    modality's query-vs-queue similarities learn the neighbourhood (top-``topk`` of the queue) of
    every other modality's keys (docs/method.md, "The objective")."""

    CONFIG = CMDConfig
    SETTINGS = MOCO_SETTINGS + (
        Setting('topk', int, 8192, "cmd: the teacher's queue neighbours the distillation compares"),
        Setting('teacher_t', float, 0.05, "cmd: the teacher's temperature"),
        Setting('student_t', float, 0.1, "cmd: the student's temperature"),
        Setting('cmd_weight', float, 1.0, "cmd: the distillation's weight; 0 turns it off"),
    )

    def __init__(self, make_encoder, layout, *, topk, teacher_t, student_t, cmd_weight, **moco):
        check_topk(topk, moco['queue_size'])
        super().__init__(make_encoder, layout, **moco)
        self.topk, self.teacher_t, self.student_t, self.cmd_weight = topk, teacher_t, student_t, cmd_weight

    def objective(self, q, k, queue):
        """The per-modality InfoNCE losses and the CMD loss: ``(total, stats)``, ``stats`` holding
        each InfoNCE loss and top-1 contrastive accuracy and the CMD loss, detached."""
        total, stats, student_sims = self.contrast(q, k, queue)
        if len(self.modalities) > 1 and self.cmd_weight:
            teacher_sims = {m: k[m] @ queue[i] for i, m in enumerate(self.modalities)}
            cmd = self.cmd_weight * cmd_loss(student_sims, teacher_sims, self.topk, self.teacher_t, self.student_t)
            total = total + cmd
            stats['cmd'] = cmd.detach()
        return total, stats
