"""nfkit-eval: one honest, reproducible evaluation of any trained nf flow.

``evaluate(flow, data, metrics=...)`` (or ``evaluate_run(run_folder)``, or ``nf eval RUN``) measures likelihood bounds,
sample quality (FID or FD in a dataset classifier's features, KID, precision/recall; KS and a real-vs-generated AUC for
tabular data), norm-preserving latent interpolation, and speed and size, and reports every number with its protocol.
"""

from nfkit_eval.context import EvalContext, EvalOptions
from nfkit_eval.data import DiscreteLikelihood, EvalData, to_data_space
from nfkit_eval.evaluate import default_metrics, evaluate, evaluate_run, load_run
from nfkit_eval.metric import applies_to
from nfkit_eval.report import Measurement, Report, side_by_side

__all__ = ["DiscreteLikelihood", "EvalContext", "EvalData", "EvalOptions", "Measurement", "Report", "applies_to",
           "default_metrics", "evaluate", "evaluate_run", "load_run", "side_by_side", "to_data_space"]
