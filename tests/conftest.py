"""Shared pytest fixtures. The LLM fixtures (a tiny Llama built once per session, toy feedback
files) live in conftest_llm.py and are registered here for every test module."""

from conftest_llm import feedback_files, one_thread, tiny_model, train_cfg  # noqa: F401
