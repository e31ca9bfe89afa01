"""`anyfeedback control`: PMPO / MPO / SAC actor-critic on the DeepMind Control Suite.

The options are generated from `ControlConfig` (one flag per field, its docstring as help), so the
CLI and the config cannot drift apart. Bad values become one-line `error:` messages, exit 2.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Optional

import typer


def _option_type(field: dataclasses.Field):
    kind = field.type if not isinstance(field.type, str) else field.type
    return {"int": int, "float": float, "str": str, "bool": bool, "float | None": Optional[float]}[
        kind
    ]


def register(app: typer.Typer) -> None:
    from anyfeedback.control.config import ControlConfig, field_docs

    docs = field_docs(ControlConfig)
    params = []
    for f in dataclasses.fields(ControlConfig):
        name = f.name.replace("_", "-")
        decl = f"--{name}/--no-{name}" if f.type == "bool" else f"--{name}"
        option = typer.Option(f.default, decl, help=docs.get(f.name, ""), show_default=True)
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_option_type(f)
            )
        )

    def control(**kwargs) -> None:
        """Train PMPO-AR/-A/-R, MPO or SAC on a DeepMind Control task (needs the `control` extra).

        Example: anyfeedback control --domain walker --task walk --method pmpo-ar --steps 200000
        --seed 0 --out runs/walker
        """
        from anyfeedback.control.train import run
        from anyfeedback.errors import check_finite_fields
        from anyfeedback.runs import prepare_output_dir

        cfg = ControlConfig(**kwargs)
        check_finite_fields(cfg)
        with prepare_output_dir(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite):
            summary = run(cfg)
        for name, s in summary.items():
            typer.echo(f"{name}: final eval return {s['final_eval_return']}  ({cfg.out})")

    control.__signature__ = inspect.Signature(params)
    control.__annotations__ = {p.name: p.annotation for p in params}
    app.command(name="control")(control)
