"""Atomic training checkpoints that resume exactly, and the final model.

`OUT/checkpoints/step-000120/` holds
  policy.safetensors     the trainable tensors (all weights, or the LoRA adapter)
  reference.safetensors  π_ref's tensors once it has moved (refresh / EMA); absent before
  optimizer.pt           optimizer state dict (tensors and numbers only)
  scheduler.pt           learning-rate scheduler state dict
  rng.pt                 torch (CPU and CUDA) RNG states as tensors
  checksums.json         SHA-256 of every file above (checked on resume)
  trainer_state.json     step, epoch, position in the epoch, tokens seen

The directory is written under a temporary name, re-read and verified (the saved tensors equal the
live ones and are finite, every file matches its checksum), and only then renamed (`os.replace`)
and older checkpoints removed: a crash or a bad state never replaces the last good checkpoint.
On resume `intact_checkpoint` takes the newest checkpoint whose files match their checksums and
falls back to an older one with one warning line. Everything loads with
`torch.load(..., weights_only=True)` or safetensors; nothing user-supplied is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from anyfeedback.errors import InputError
from anyfeedback.llm.model import whole_tensor
from anyfeedback.runs import atomic_write_json, follow_umask

PREFIX = "step-"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (full model, or the LoRA adapter), whole, contiguous on CPU."""
    return {
        n: whole_tensor(p.detach()).to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The model's whole weights when FSDP2 sharded them (DTensor parameters, which
    `save_pretrained` cannot write): gathered, so every process must call it. None for plain
    tensors, which `save_pretrained` reads itself."""
    state = model.state_dict()
    if not any(hasattr(t, "full_tensor") for t in state.values()):
        return None
    return {n: whole_tensor(t.detach()).cpu() for n, t in state.items()}


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    root: Path,
    step: int,
    *,
    policy: torch.nn.Module,
    reference_state: dict[str, torch.Tensor],
    optimizer,
    scheduler,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically under `root`, then delete all but the newest `keep`."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".tmp-{PREFIX}{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = trainable_state(policy)
    save_file(weights, str(tmp / "policy.safetensors"))
    ref = {}
    if reference_state:
        ref = {n: t.detach().to("cpu", copy=True).contiguous() for n, t in reference_state.items()}
        save_file(ref, str(tmp / "reference.safetensors"))
    torch.save(optimizer_state(optimizer), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    _verify_saved(tmp, weights, ref)
    atomic_write_json(tmp / "checksums.json", _checksums(tmp))
    atomic_write_json(tmp / "trainer_state.json", {**state, "step": step})
    follow_umask(tmp)
    _fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _verify_saved(tmp: Path, weights: dict, ref: dict) -> None:
    """Re-read the written tensors: equal to the live state and finite, or no checkpoint."""
    for name, live in (("policy.safetensors", weights), ("reference.safetensors", ref)):
        if not live:
            continue
        saved = load_file(str(tmp / name))
        ok = saved.keys() == live.keys() and all(torch.equal(saved[k], live[k]) for k in live)
        finite = all(torch.isfinite(t).all() for t in saved.values() if t.is_floating_point())
        if not (ok and finite):
            shutil.rmtree(tmp, ignore_errors=True)
            problem = "differs from the model after re-reading" if not ok else "is not finite"
            raise RuntimeError(f"checkpoint not written: {name} {problem}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(ckpt: Path) -> dict[str, str]:
    names = sorted(p.name for p in ckpt.iterdir() if p.is_file() and not p.name.startswith("."))
    return {
        n: _sha256(ckpt / n) for n in names if n not in ("checksums.json", "trainer_state.json")
    }


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why checkpoint `ckpt` cannot be resumed (a missing or changed file), or None if intact."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        expected = json.loads((ckpt / "checksums.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"unreadable ({type(err).__name__})"
    if not isinstance(expected, dict) or "policy.safetensors" not in expected:
        return "checksums.json lists no policy.safetensors"
    for name, digest in expected.items():
        if Path(name).name != name or not (ckpt / name).is_file():
            return f"{name} is missing"
        if _sha256(ckpt / name) != digest:
            return f"{name} does not match its checksum"
    return None


def intact_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint under `root` that passes `checkpoint_problem`; each newer corrupt
    one is named in a warning line on stderr. InputError if there are checkpoints but none is
    intact; None if there are none."""
    found = list_checkpoints(root)
    for ckpt in reversed(found):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        print(
            f"warning: checkpoint {ckpt} is corrupt ({problem}); trying an older one",
            file=sys.stderr,
        )
    if found:
        raise InputError("no intact checkpoint to resume from", source=str(root))
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    found = [p for p in found if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def load_weights(path: Path, policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copy the checkpoint's trainable tensors into `policy`; return the reference tensors."""
    weights = load_file(str(path / "policy.safetensors"))
    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    unknown = sorted(set(weights) ^ set(params))
    shapes = [n for n in weights if n in params and weights[n].shape != params[n].shape]
    if unknown or shapes:
        what = f"unknown or missing {unknown[:2]}" if unknown else f"shape of {shapes[0]}"
        raise InputError(
            f"checkpoint {path} does not match --model ({what}); resume with the run's model",
            field="model",
        )
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)
    ref_file = path / "reference.safetensors"
    return load_file(str(ref_file)) if ref_file.is_file() else {}


# DeepSpeed ZeRO's optimizer state holds objects that a weights_only load refuses: the loss scaler
# is kept as its numbers, the enum stage as an int, and the fragment map (read only by DeepSpeed's
# own universal checkpoints) dropped.
def optimizer_state(optimizer) -> dict[str, Any]:
    """The optimizer's state dict as tensors and plain numbers (DeepSpeed ZeRO's included)."""
    state = optimizer.state_dict()
    scaler = state.pop("loss_scaler", None)
    if scaler is not None:
        plain = (bool, int, float)
        state["loss_scaler_numbers"] = {k: v for k, v in vars(scaler).items() if type(v) in plain}
        state.pop("param_slice_mappings", None)
        state["zero_stage"] = int(state["zero_stage"])
    return state


def load_optimizer_state(optimizer, state: dict[str, Any]) -> None:
    """Restore `optimizer_state`. DeepSpeed ZeRO (one process: the checkpoint holds one
    partition) takes a list of per-rank states and restores its float32 master weights from it."""
    numbers = state.pop("loss_scaler_numbers", None)
    if numbers is None:
        optimizer.load_state_dict(state)
        return
    zero = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds DeepSpeed's
    zero.load_state_dict([state], load_optimizer_states=True, load_from_fp32_weights=True)
    vars(zero.loss_scaler).update(numbers)


def load_training_state(path: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states; return trainer_state.json."""
    load_optimizer_state(optimizer, torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))


def save_final_model(
    policy: torch.nn.Module,
    tokenizer,
    out: Path,
    *,
    merge_lora: bool,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """`save_pretrained` (safetensors) of the policy and tokenizer into `out`, atomically.
    With LoRA: the adapter, or with `merge_lora` the merged full model. `state_dict`: the
    weights gathered by `full_state_dict` where FSDP2 sharded them."""
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = policy
    if merge_lora and hasattr(policy, "merge_and_unload"):
        import copy

        model = copy.deepcopy(policy).merge_and_unload()
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = True  # training turned the KV cache off; generation wants it
    if state_dict is not None:
        model.save_pretrained(str(tmp), state_dict=state_dict)
    else:
        model.save_pretrained(str(tmp))
    model.config.use_cache = use_cache
    tokenizer.save_pretrained(str(tmp))
    follow_umask(tmp)  # safetensors writes 0600
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
