"""Model cards and the Hugging Face Hub: every saved model or adapter directory gets a README.md.

The card's YAML front matter is what the Hub indexes (`base_model`, `library_name`, `tags`); the
body says how the weights were made: method, α/β, data (source, split, record counts), steps,
final metrics and the command line. A LoRA adapter's card replaces PEFT's blank template.

`--push-to-hub --hub-model-id owner/name` uploads the final directory with `huggingface_hub`
(`create_repo` + `upload_folder`); `check_hub_access` refuses before training starts when the
Hub is switched off (HF_HUB_OFFLINE=1) or no token is found.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from anyfeedback.errors import InputError
from anyfeedback.runs import atomic_write_text, command_line

# the method names as the Hub's tag search knows them
METHOD_TAGS = {
    "pmpo": ["pmpo"],
    "dpo": ["dpo"],
    "ipo": ["ipo"],
    "kto": ["kto"],
    "sft": ["sft"],
    "aihf-dpo": ["aihf", "dpo"],
    "self-play-aihf": ["aihf", "spin"],
    "rloo": ["rloo", "aihf"],
    "reward-model": ["reward-model"],
}


def _yaml_value(value: Any) -> str:
    return json.dumps(str(value))  # a JSON string is valid YAML and quotes what needs it


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def model_card(
    *,
    base_model: str,
    method: str,
    adapter: bool,
    settings: dict[str, Any],
    data: dict[str, Any],
    steps: int,
    metrics: dict[str, Any],
    command: str | None = None,
) -> str:
    """README.md text: YAML front matter, then method, settings, data, steps, metrics, command."""
    tags = ["anyfeedback", *METHOD_TAGS.get(method, [method])]
    if adapter:
        tags.append("lora")
    lines = ["---", f"base_model: {_yaml_value(base_model)}"]
    lines.append(f"library_name: {'peft' if adapter else 'transformers'}")
    lines += ["tags:"] + [f"- {t}" for t in dict.fromkeys(tags)]
    lines += ["---", "", f"# {method} fine-tune of `{base_model}`", ""]
    kind = "A LoRA adapter" if adapter else "A model"
    lines.append(
        f"{kind} trained with [anyfeedback](https://pypi.org/project/anyfeedback/) "
        f"using **{method}**."
    )
    lines += ["", "## Training", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in settings.items() if v is not None]
    lines.append(f"- optimizer steps: {steps}")
    lines += ["", "## Data", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in data.items() if v is not None]
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if shown:
        lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in shown.items()]
    lines += ["", "## Command", "", "```", command or command_line(), "```", ""]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, **fields: Any) -> Path:
    """Write `model_card(**fields)` to MODEL_DIR/README.md (adapter detected from the files)."""
    model_dir = Path(model_dir)
    adapter = (model_dir / "adapter_config.json").is_file()
    path = model_dir / "README.md"
    atomic_write_text(path, model_card(adapter=adapter, **fields))
    return path


SETTING_KEYS = (
    "alpha",
    "beta",
    "demo_weight",
    "pref_weight",
    "learning_rate",
    "lora_r",
    "k",
    "labelling",
    "iterations",
)
DATA_KEYS = ("data", "split", "prompts", "reward", "pairs", "demos")


def write_run_card(
    model_dir: str | Path,
    config: dict[str, Any],
    *,
    method: str,
    steps: int,
    metrics: dict[str, Any],
) -> Path:
    """The card of a model saved by an online, AIHF, self-play or reward run, from its config."""
    from anyfeedback.runs import jsonable

    config = jsonable(config)
    settings = {k: config[k] for k in SETTING_KEYS if config.get(k) is not None}
    data = {k: config[k] for k in DATA_KEYS if config.get(k)}
    return write_model_card(
        model_dir,
        base_model=str(config.get("model", "?")),
        method=method,
        settings=settings,
        data=data,
        steps=steps,
        metrics=metrics,
    )


def train_card_fields(cfg, info: dict[str, Any], steps: int, metrics: dict[str, Any]) -> dict:
    """`write_model_card` fields of an `anyfeedback train` run."""
    from anyfeedback.feedback.loaders import source_name

    settings: dict[str, Any] = {"method": cfg.method}
    if cfg.method == "pmpo":
        settings.update(alpha=cfg.alpha, beta=cfg.beta)
    elif cfg.method != "sft":
        settings["beta"] = cfg.beta
    settings.update(
        learning_rate=cfg.learning_rate,
        lora_r=cfg.lora_r or None,
        global_batch=info.get("global_batch"),
    )
    data = {
        "source": source_name(cfg.data),
        "split": cfg.split,
        "dataset_config": cfg.dataset_config,
        "record kind": info.get("record_kind"),
        "records": info.get("records"),
        "accepted": info.get("accepted"),
        "rejected": info.get("rejected"),
        "eval records": info.get("eval_records"),
    }
    if cfg.eval_data is not None or cfg.eval_split:
        data["eval source"] = f"{source_name(cfg.eval_data or cfg.data)} split {cfg.eval_split}"
    return dict(
        base_model=str(cfg.model),
        method=cfg.method,
        settings=settings,
        data=data,
        steps=steps,
        metrics=metrics,
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub_access(repo_id: str | None) -> None:
    """Refuse --push-to-hub up front (one line) when it could only fail at the end."""
    if not repo_id:
        raise InputError("--push-to-hub needs --hub-model-id owner/name", source="config")
    if _offline():
        raise InputError(
            "--push-to-hub cannot upload with HF_HUB_OFFLINE=1 set (unset it, or "
            "drop --push-to-hub and upload OUT/model later)",
            source="config",
        )
    from huggingface_hub import get_token

    if not get_token():
        raise InputError(
            "--push-to-hub needs a Hugging Face token (`hf auth login` or HF_TOKEN)",
            source="config",
        )


def push_to_hub(model_dir: str | Path, repo_id: str) -> str:
    """Create `repo_id` (if needed) and upload `model_dir`; returns the repository URL."""
    from huggingface_hub import create_repo, upload_folder

    url = create_repo(repo_id, exist_ok=True)
    upload_folder(
        folder_path=str(model_dir), repo_id=repo_id, commit_message="anyfeedback: upload model"
    )
    return str(url)
