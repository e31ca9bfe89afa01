"""The published demo table is the one `summary.json` renders: README.md and
docs/results/demo.md hold `demo_table(results/demo/summary.json)` verbatim, so regenerating
results/demo without re-rendering them fails here."""

from __future__ import annotations

import json
from pathlib import Path

from anyfeedback.llm.demo.table import demo_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_and_docs_show_the_table_of_summary_json():
    summary = json.loads((ROOT / "results/demo/summary.json").read_text(encoding="utf-8"))
    table = demo_table(summary)
    for page in ("README.md", "docs/results/demo.md"):
        assert table in (ROOT / page).read_text(encoding="utf-8"), page
