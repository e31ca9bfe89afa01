"""Black-box optimisation from preferences (PMPO §5.1): test functions, a batched Gaussian-policy
engine with PMPO / DPO / MPO / CEM update rules, CMA-ES through pycma, reports and the α × β
sweep. Entry points: `anyfeedback bandit run|sweep` and `anyfeedback.bandit.run.run_bandit`.

Nothing is imported here, so `import anyfeedback.bandit` stays light (torch loads with `engine`,
matplotlib inside the plotting functions, cma inside the CMA-ES worker).
"""
