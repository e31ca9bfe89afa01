"""CLI command modules. Each module exposes `register(app)`; keep imports inside commands."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from anyfeedback.commands import (
        aihf,
        aihf_control,
        bandit,
        control,
        data,
        demo,
        offline,
        online,
        plot,
        reward,
        train,
    )

    modules = (data, train, online, reward, aihf, demo, plot, control, offline, aihf_control)
    for module in (*modules, bandit):
        module.register(app)
