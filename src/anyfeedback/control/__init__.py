"""Control: an off-policy actor-critic on the DeepMind Control Suite with interchangeable policy
improvement steps (PMPO, MPO, SAC). dm_control is imported only by `envs` (optional extra).

  nets.py      ensemble Gaussian actor (MLP -> mean, std) and fused twin critic (stacked parameters, batched matmuls)
  replay.py    n-step replay for lockstep agents
  improve.py   PMPO and MPO improvement steps, label rules, the METHODS table
  mpo_step.py  MPO pieces from losses.mpo, summed per action dimension (the Gaussian maths:
               anyfeedback.policies.gaussian)
  sac.py       SAC's actor/temperature losses and soft bootstrap
  learner.py   one update: critic, improvement, targets
  train.py     the loop: act, step, replay, update, evaluate, checkpoint, resume
  checkpoint.py  safetensors + JSON checkpoints: verified on write, damaged ones skipped on resume
  health.py    divergence checks (parameters' norms, watched metrics) before logging/checkpointing
  npz.py       the applications' NPZ inputs, read without pickle, one-line errors
  rollouts.py  a run directory's policy rolled out with action noise: transitions, segments
"""
