"""nfkit-distill: knowledge distillation of normalizing flows (Walton et al., "Distilling Normalizing Flows").

``distill(teacher_run, out, preset=..., loss="ilkd")`` trains a student; ``nf distill`` does the same from the
command line. See :mod:`nfkit_distill.alignment` for the pairing of intermediates and
:mod:`nfkit_distill.objective` for the loss.
"""

from nfkit_distill.alignment import DistillationMismatchError, Pair, Pairing, align, teacher_boundary
from nfkit_distill.api import distill, student_run
from nfkit_distill.distillers import ILKDConfig, ILKDSKDConfig, LKDConfig, SKDConfig, build_objective
from nfkit_distill.losses import ilkd_loss, lkd_loss, skd_loss
from nfkit_distill.objective import DistillationConfig, DistillationObjective
from nfkit_distill.trainer import DistillTrainer

__all__ = ["DistillTrainer", "DistillationConfig", "DistillationMismatchError", "DistillationObjective",
           "ILKDConfig", "ILKDSKDConfig", "LKDConfig", "Pair", "Pairing", "SKDConfig", "align", "build_objective",
           "distill", "ilkd_loss", "lkd_loss", "skd_loss", "student_run", "teacher_boundary"]
