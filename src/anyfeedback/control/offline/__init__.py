"""Offline RL from labels (PMPO arXiv 2410.04166 §5.3, Table 1): a fixed dataset of transitions,
a value function fitted to it, accepted/rejected labels by advantage sign, PMPO or BC.

  dataset.py  the NPZ format and its validating loader (one-line errors, exit 2)
  value.py    n-step fitted Q/V evaluation of the behaviour data
  labels.py   advantage-sign labels (pure)
  config.py   OfflineConfig and the Table 1 method presets (α, β)
  train.py    value fit → labels → policy ensemble → evaluation → run directory
  report.py   the run directory's outputs: weights, summary.json, curves.png, report.md
"""
