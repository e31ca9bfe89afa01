"""Loss core: pure functions of per-sample log-probs (and KL), shared by bandit, control and LLM.

Each returns `(loss, diagnostics)`; the loss is minimised; diagnostics are detached NamedTuples.
Each setting picks its loss at the edge (a dict from CLI names to these functions, e.g.
`llm.objective.BATCH_LOSSES`); no string switches inside the maths.
"""

from anyfeedback.losses.aihf import (
    aihf_demo_irl_linear,
    aihf_demo_irl_logistic,
    aihf_dpo_loss,
    aihf_reward_loss,
    self_play_aihf_loss,
)
from anyfeedback.losses.kl import dense_kl, gaussian_kl, gaussian_kl_diag, gaussian_kl_full
from anyfeedback.losses.kto import kto_loss, kto_reference_point, mismatched_indices
from anyfeedback.losses.mpo import (
    check_mpo_epsilon,
    decoupled_kl_lagrangian,
    estep_weights,
    kl_to_uniform,
    solve_temperature,
    temperature_dual,
    weighted_nll,
)
from anyfeedback.losses.pmpo import BetaBelowBoundWarning, check_pmpo_beta, pmpo_loss
from anyfeedback.losses.preference import dpo_loss, ipo_loss, log_ratio_margin, spin_loss
from anyfeedback.losses.reward import bradley_terry_loss
from anyfeedback.losses.rl import rloo_advantages, rloo_dense_kl_loss, rloo_loss
from anyfeedback.losses.sft import sft_loss
from anyfeedback.losses.tokens import sequence_logps, token_logps_and_kl

__all__ = [
    "BetaBelowBoundWarning",
    "aihf_demo_irl_linear",
    "aihf_demo_irl_logistic",
    "aihf_dpo_loss",
    "aihf_reward_loss",
    "bradley_terry_loss",
    "check_mpo_epsilon",
    "check_pmpo_beta",
    "decoupled_kl_lagrangian",
    "dense_kl",
    "dpo_loss",
    "estep_weights",
    "gaussian_kl",
    "gaussian_kl_diag",
    "gaussian_kl_full",
    "ipo_loss",
    "kl_to_uniform",
    "kto_loss",
    "kto_reference_point",
    "log_ratio_margin",
    "mismatched_indices",
    "pmpo_loss",
    "rloo_advantages",
    "rloo_dense_kl_loss",
    "rloo_loss",
    "self_play_aihf_loss",
    "sequence_logps",
    "sft_loss",
    "solve_temperature",
    "spin_loss",
    "temperature_dual",
    "token_logps_and_kl",
    "weighted_nll",
]
