"""`FeedbackDataset`: validated records of one kind, with the views trainers need."""

from __future__ import annotations

from dataclasses import dataclass

from anyfeedback.feedback.schema import Demonstration, Paired, PromptOnly, Record, Text, Unpaired


@dataclass
class FeedbackDataset:
    """Records of one `kind` ('unpaired' | 'paired' | 'demonstration' | 'prompt-only') read from
    `source`."""

    kind: str
    records: list[Record]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def accepted(self) -> list[Unpaired]:
        return [r for r in self.records if isinstance(r, Unpaired) and r.label]

    @property
    def rejected(self) -> list[Unpaired]:
        return [r for r in self.records if isinstance(r, Unpaired) and not r.label]

    @property
    def prompts(self) -> list[Text]:
        return [r.prompt for r in self.records]

    @property
    def conversational(self) -> bool:
        return any(isinstance(r.prompt, list) for r in self.records)

    def counts(self) -> dict[str, int]:
        """Records of each role: accepted/rejected (unpaired), pairs, demos, prompts."""
        unique = {str(p) for p in self.prompts}
        return {
            "records": len(self.records),
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "pairs": sum(isinstance(r, Paired) for r in self.records),
            "demos": sum(isinstance(r, Demonstration) for r in self.records),
            "prompt_only": sum(isinstance(r, PromptOnly) for r in self.records),
            "unique_prompts": len(unique),
        }
