"""The demo's results table, rendered from its `summary.json`, so published numbers cannot drift
from the run that produced them.

    python -m anyfeedback.llm.demo.table results/demo/summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    ("method", None),
    ("held-out reward (start → final)", ("start reward", "final reward")),
    ("win rate vs start", "win rate vs start"),
    ("KL to start (held-out)", "held-out KL to start"),
    ("distinct-2 (start → final)", ("distinct-2 start", "distinct-2 final")),
    ("repeat-2 (start → final)", ("repeat-2 start", "repeat-2 final")),
    ("degenerate", "degenerate"),
)


def _cell(row: dict, key) -> str:
    if isinstance(key, tuple):
        return " → ".join(_cell(row, k) for k in key)
    value = row.get(key)
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


def demo_table(summary: dict) -> str:
    """A Markdown table: one row per method of `summary["methods"]`, then the run's times."""
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    rule = "|" + "---|" * len(COLUMNS)
    lines = [head, rule]
    for method, row in summary["methods"].items():
        cells = [method] + [_cell(row, key) for _, key in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    times = (
        f"`{summary.get('command', 'anyfeedback demo')}`: wall {summary['wall_s']:.0f} s, "
        f"CPU {summary['cpu_s']:.0f} s on {summary.get('cores', '?')} cores."
    )
    return "\n".join(lines) + "\n\n" + times + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "results/demo/summary.json")
    print(demo_table(json.loads(path.read_text(encoding="utf-8"))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
