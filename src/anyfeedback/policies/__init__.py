"""Policies as distributions: log-densities, sampling and closed-form KLs (torch only)."""

from anyfeedback.policies.gaussian import GaussianPolicy, raw_from_scale, scale_from_raw

__all__ = ["GaussianPolicy", "raw_from_scale", "scale_from_raw"]
