"""Bradley–Terry reward models on a causal-LM backbone (`anyfeedback reward`).

r_φ(x, y) is a one-output sequence-classification head on the last non-pad token of the
backbone (Hugging Face `AutoModelForSequenceClassification`, num_labels = 1), so a trained model
saves and loads in HF format and serves the online loop as `--reward DIR`
(`anyfeedback.rewards.SequenceClassifierReward`). Heavy imports stay inside the functions.
"""
