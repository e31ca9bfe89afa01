"""Loading the policy and its tokenizer, LoRA, and the forward to the hidden states of the
scored positions that the fused LM head reads (π_ref itself: `llm.reference`)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from anyfeedback.errors import InputError
from anyfeedback.llm.fused_blocks import fuse_blocks
from anyfeedback.llm.packing import Packed
from anyfeedback.losses.tokens import LMHead


def load_tokenizer(cfg):
    """The tokenizer of `cfg.model`, with a pad token (EOS if it has none)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    name = cfg.model
    if not Path(name).expanduser().exists() and (
        name.startswith((".", "/", "~")) or name.count("/") > 1
    ):
        raise InputError("no such model directory", source=name)
    try:
        tok = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load the model's tokenizer: {first}", source=cfg.model) from None
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise InputError("the tokenizer has neither a pad nor an EOS token", source=cfg.model)
        tok.pad_token = tok.eos_token
    return tok


def zero_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def load_policy(cfg) -> torch.nn.Module:
    """The causal LM (float32 weights; --bf16/--fp16 are autocast), LoRA-wrapped if --lora-r."""
    from transformers import AutoModelForCausalLM

    kwargs = {"trust_remote_code": cfg.trust_remote_code, "dtype": torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"cannot load the model: {first}", source=cfg.model) from None
    model.config.use_cache = False
    fuse_blocks(model)  # fewer activations kept for backward (llm/fused_blocks.py)
    if cfg.disable_dropout:
        zero_dropout(model)
    if cfg.gradient_checkpointing:
        non_reentrant = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=non_reentrant)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=non_reentrant)
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets if targets == "all-linear" else targets.split(","),
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(cfg.seed)
        model = get_peft_model(model, lora)
    return model


def is_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class _GatherBeforeHead:
    """Forward pre-hook on the LM head. While `views` = (rows [M], index [M, K]) is set, replace
    the head's input hidden states [R, T, H] by the positions it names, [M, K, H] (logits of the
    kept positions only). While `scored` = (rows [N], positions [N]) is set, keep those N hidden
    states in `captured` and feed the head an empty [R, 0, H] slice: the fused head
    (`losses.tokens.fused_token_stats`) computes the logits chunk by chunk afterwards."""

    def __init__(self) -> None:
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None
        self.scored: tuple[torch.Tensor, torch.Tensor] | None = None
        self.captured: torch.Tensor | None = None

    def __call__(self, module, args):
        if self.scored is not None:
            rows, positions = self.scored
            self.captured = args[0][rows, positions]  # [N, H]
            return (args[0][:, :0], *args[1:])  # [R, 0, H]: the head's matmul is skipped
        if self.views is None:
            return None
        rows, index = self.views
        return (args[0][rows[:, None], index], *args[1:])  # [M, K, H]


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


def _gather_hook(model: torch.nn.Module) -> _GatherBeforeHead | None:
    inner = _inner(model)
    hook = inner.__dict__.get("_anyfeedback_gather")
    if hook is None:
        head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
        if head is None:
            return None
        hook = _GatherBeforeHead()
        head.register_forward_pre_hook(hook)
        inner.__dict__["_anyfeedback_gather"] = hook
    return hook


class ScoredStates(NamedTuple):
    """What the fused head needs from one model: hidden states [N, H] of the scored positions
    and the head that turns them into logits."""

    hidden: torch.Tensor
    head: LMHead


def scored_states(model: torch.nn.Module, seqs: Packed) -> ScoredStates:
    """`completion_hidden` and `lm_head` of `model` (with grad where the caller has it on)."""
    return ScoredStates(completion_hidden(model, seqs), lm_head(model))


def lm_head(model: torch.nn.Module) -> LMHead:
    """The LM head of `model` as (weight [V, H], bias, scale, soft-cap) for the fused head.

    Final-logit processing found in transformers' causal LMs: Gemma 2/3
    `final_logit_softcapping`, Cohere `logit_scale` (×), Granite `logits_scaling` (÷)."""
    inner = _inner(model)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise InputError("the model has no linear LM head (get_output_embeddings)", source="model")
    if hasattr(head, "lora_A") or hasattr(head, "base_layer"):
        raise InputError(
            "LoRA on the LM head is not supported (the fused head reads its weight); leave "
            "lm_head out of the target modules",
            source="--lora-target-modules",
        )
    weight, bias = whole_tensor(head.weight), whole_tensor(head.bias)
    config = getattr(inner, "config", None)
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    scale /= float(getattr(config, "logits_scaling", None) or 1.0)
    softcap = getattr(config, "final_logit_softcapping", None)
    return LMHead(weight, bias, scale, float(softcap) if softcap else None)


def whole_tensor(param: torch.Tensor | None) -> torch.Tensor | None:
    """The whole tensor of a parameter that FSDP2 shards (a DTensor outside the module's
    forward): an all-gather (a collective: every process calls it) whose backward
    reduce-scatters the gradient back to the shard. Other tensors pass through."""
    return param.full_tensor() if hasattr(param, "full_tensor") else param


def completion_hidden(model: torch.nn.Module, seqs: Packed) -> torch.Tensor:
    """Final hidden states [N, H] at the positions that predict the N scored tokens of `seqs`
    (in `Packed.scored` order); the LM head itself runs on nothing."""
    hook = _gather_hook(model)
    if hook is None:
        raise InputError(
            "the model has no LM head accessor (get_output_embeddings)", source="model"
        )
    rows, positions, _, _ = seqs.scored()
    hook.scored = (rows, positions)
    try:
        model(**_forward_kwargs(seqs))
        return hook.captured
    finally:
        hook.scored, hook.captured = None, None


def _forward_kwargs(seqs: Packed) -> dict:
    # A 2-D mask only marks right padding (`pack`): causal attention already keeps every real
    # token from seeing the pads after it, and pad positions are never scored. Passing no mask
    # lets SDPA take its causal (flash) kernel instead of a masked one: on an H100 the masked
    # path (cuDNN, re-planned for every new shape) cost ~4 ms of host time per layer call.
    # Positions go too: real tokens of a right-padded row sit at 0..n-1 (the model's default),
    # and pads repeating a position would read as packed sequences and bring a mask back.
    # Padding-free rows (`pack_flat`) pass only positions that restart per sequence, which
    # transformers turns into a block-diagonal causal mask.
    block = seqs.attention_mask.dim() == 4
    return {
        "input_ids": seqs.input_ids,
        "attention_mask": seqs.attention_mask if block else None,
        "position_ids": seqs.position_ids if block or seqs.flat else None,
        "use_cache": False,
    }


def completion_logits(model: torch.nn.Module, seqs: Packed) -> torch.Tensor:
    """Logits at the K scoring positions of each view only. Returns [M, K, V].

    The LM head runs on the gathered hidden states (see `_GatherBeforeHead`); a model without
    an output-embedding accessor falls back to full logits, then gathers them."""
    hook = _gather_hook(model)
    kwargs = _forward_kwargs(seqs)
    if hook is None:
        logits = model(**kwargs).logits  # [R, T, V]
        return logits[seqs.rows[:, None], seqs.gather_index]
    hook.views = (seqs.rows, seqs.gather_index)
    try:
        return model(**kwargs).logits
    finally:
        hook.views = None


def shared_prompt_supported(model: torch.nn.Module, pad_id: int) -> bool:
    """Does `model` honour the block mask of `pack_shared`? Compares the log-probs of one toy
    pair packed shared and as separate rows (some attention kernels and recurrent layers ignore
    custom 4D masks; then the prompt is simply not shared)."""
    from anyfeedback.llm.packing import pack, pack_shared
    from anyfeedback.losses.tokens import fused_token_stats

    v = (
        int(model.get_input_embeddings().weight.shape[0])
        if hasattr(model, "get_input_embeddings")
        else 32
    )
    prompt, chosen, rejected = [1 % v, 5 % v, 7 % v], [11 % v, 13 % v], [17 % v, 19 % v, 23 % v]
    device = next(model.parameters()).device
    shared = pack_shared([prompt], [(chosen, rejected)], pad_id).to(device)
    separate = pack([prompt, prompt], [chosen, rejected], pad_id).to(device)
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            a, b = (
                fused_token_stats(*scored_states(model, s), s.scored()[2]).logps
                for s in (shared, separate)
            )
    except Exception:  # noqa: BLE001  (any kernel that rejects the mask means "not supported")
        return False
    finally:
        model.train(was)
    return bool(torch.allclose(a, b, atol=1e-3, rtol=1e-3))
