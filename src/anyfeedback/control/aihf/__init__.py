"""AIHF for continuous control (arXiv 2406.06874, App. A.2.1): a reward network learned jointly
with an entropy-regularised (SAC) policy from demonstrations and segment preferences, plus the
RLHF, ML-IRL and BC baselines on the same data. dm_control is imported only where envs are built.

  reward.py   ensemble reward MLP r_φ(s) or r_φ(s, a), segment returns
  data.py     the trajectory pool (npz), per-member demonstrations and preference pairs
  config.py   the flat config (`anyfeedback aihf-control`)
  loop.py     Algorithm 1: K SAC steps on relabelled replay, then reward steps; evaluation
  bc.py       behaviour cloning on the demonstrations
"""
