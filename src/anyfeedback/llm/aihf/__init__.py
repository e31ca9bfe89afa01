"""AIHF for language models (arXiv 2406.06874): Algorithm 1 (`anyfeedback aihf`: RLOO policy
steps against a reward learned jointly from demonstrations and preferences) and Self-Play AIHF /
SPIN (`anyfeedback self-play`). AIHF-DPO is `anyfeedback train --method aihf-dpo`. The losses
live in `anyfeedback.losses` (aihf.py, rl.py); this package wires them to the LM trainer."""
