"""How big and how long a benchmark run is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunConfig:
    """The knobs of one run, shared by every section."""

    #: Side-by-side rounds (A B A B ...); the figures are medians over them.
    rounds: int = 5
    #: Seconds of load per wrk run.
    duration: float = 5.0
    #: Seconds of load to warm each server up before the rounds (0: none).
    warmup: float = 2.0
    #: wrk connections.
    connections: int = 8
    #: Controller files in the large catalog.
    files: int = 1000
    #: uWSGI worker processes per server.
    processes: int = 2
    #: Task round trips per round (latency sections).
    trips: int = 200
    #: Seconds of the one steady load through nginx (part 7).
    steady: float = 60.0
    #: Requests the soak (part 10) answers at least between its two memory readings.
    soak_requests: int = 100_000
    #: Scratch folder: catalogs, logs, wrk scripts.
    work: Path = Path("var/bench")

    @classmethod
    def smoke(cls, work: Path) -> RunConfig:
        """The tiny run ``make test`` uses so the scripts cannot rot."""
        return cls(rounds=1, duration=1.0, warmup=0.0, connections=2, files=20, trips=5,
                   steady=3.0, soak_requests=1000, work=work)
