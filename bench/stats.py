"""Side-by-side measurement bookkeeping: samples per (case, side), ratios, medians."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field


@dataclass
class Comparison:
    """Paired samples of one case: ``subject`` measured next to ``baseline`` each round."""

    case: str
    subject: str
    baseline: str
    #: Higher is better (requests per second) or lower is better (latency).
    higher_is_better: bool = True
    unit: str = "req/s"
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, side: str, value: float) -> None:
        """Record one round's figure for ``side``."""
        self.samples[side].append(value)

    def ratios(self) -> list[float]:
        """Per-round ratios subject / baseline (rounds measured side by side)."""
        return [s / b for s, b in zip(self.samples[self.subject],
                                      self.samples[self.baseline], strict=False) if b]

    def ratio(self) -> float:
        """Median of the per-round ratios."""
        ratios = self.ratios()
        return statistics.median(ratios) if ratios else float("nan")

    def median(self, side: str) -> float:
        """Median figure of one side."""
        values = self.samples[side]
        return statistics.median(values) if values else float("nan")

    def difference(self) -> float:
        """Median of the per-round differences subject - baseline."""
        diffs = [s - b for s, b in zip(self.samples[self.subject],
                                       self.samples[self.baseline], strict=False)]
        return statistics.median(diffs) if diffs else float("nan")

    def as_dict(self) -> dict[str, object]:
        """Plain data, for ``--json``."""
        return {
            "case": self.case, "subject": self.subject, "baseline": self.baseline,
            "unit": self.unit, "ratio": self.ratio(), "ratios": self.ratios(),
            "difference": self.difference(),
            "subject_median": self.median(self.subject),
            "baseline_median": self.median(self.baseline),
            "samples": {k: list(v) for k, v in self.samples.items()},
        }

    def line(self) -> str:
        """One printed line: medians of both sides and the median ratio."""
        ratios = self.ratios()
        spread = f"{min(ratios):.3f}-{max(ratios):.3f}" if ratios else "-"
        return (f"{self.case:<34} {self.subject:>14} {self.median(self.subject):>10.1f}  "
                f"{self.baseline:>14} {self.median(self.baseline):>10.1f} {self.unit:<6} "
                f"ratio {self.ratio():.3f} (rounds {spread}, n={len(ratios)})"
                + ("" if self.higher_is_better else f" diff {self.difference():+.1f}"))
