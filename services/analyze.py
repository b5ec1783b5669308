"""``poserun analyze``: the fusion processor over recordings, offline.

Each recording goes through the same :meth:`FusionService.handle` as the live service, message by
message in recorded order, with each message's log time as its receive time and as the clock that
stamps ``emitted_ns``: no broker, deterministic, and the same records the live service gives for
the same frames (``emitted_ns`` aside, which live is the wall clock). Athletes named in a lab
import's metadata (``poserun.athletes``: body mass, leg length) are used unless the config lists
them.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poserun.recording import athletes_metadata, message_count, read_messages
from poserun.services.fusion import FusionService
from poserun.settings import AthleteSettings, Settings, load_settings
from poserun.sinks.base import Record

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class Analysis:
    """The records of one or more recordings, and what the service counted for each file."""

    records: list[Record] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> the service's snapshot

    def summary(self) -> list[dict[str, Any]]:
        return summarize(self.records)


def settings_for(path: str | Path, settings: Settings) -> Settings:
    """``settings`` with the recording's athletes (a lab import's subjects) added where not configured."""
    listed = {a.id for a in settings.athletes}
    extra = []
    for a in athletes_metadata(path):
        ident = str(a.get("id") or a.get("athlete") or "")
        if not ident or ident in listed:
            continue
        known = {k: a[k] for k in ("body_mass_kg", "leg_length_m", "name") if a.get(k) is not None}
        try:
            extra.append(AthleteSettings(id=ident, **known))
        except ValueError:  # a subject outside the config's ranges: the defaults, not a failed analysis
            extra.append(AthleteSettings(id=ident))
    return settings.model_copy(update={"athletes": [*settings.athletes, *extra]}) if extra else settings


def analyze_file(path: str | Path, settings: Settings, *,
                 progress: Callable[[int, int], None] | None = None) -> tuple[list[Record], dict[str, Any]]:
    """The records of one recording and the service's counters after it."""
    clock = [0]
    service = FusionService(settings_for(path, settings), clock=lambda: clock[0])
    total = message_count(path)
    records: list[Record] = []
    for n, m in enumerate(read_messages(path), 1):
        clock[0] = m.log_time_ns
        records += service.handle(m.topic, m.payload, m.log_time_ns or 1)
        if progress is not None and (n % 2000 == 0 or n == total):
            progress(n, total)
    return records, service.snapshot()


def analyze_files(paths: Iterable[str | Path], settings: Settings | None = None, *,
                  progress: Callable[[str, int, int], None] | None = None) -> Analysis:
    """Every recording in turn, each with a fresh service (they share no state)."""
    settings = settings or load_settings()
    out = Analysis()
    for path in paths:
        def step(n: int, total: int, name: str = str(path)) -> None:
            if progress is not None:
                progress(name, n, total)

        records, snapshot = analyze_file(path, settings, progress=step)
        out.records += records
        out.files[str(path)] = snapshot
    return out


def median_of(values: Iterable[Any]) -> float | None:
    """The median of the numbers among ``values`` (None, text and booleans skipped); None without any."""
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(nums) if nums else None


def summarize(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per session and athlete: stances, median support/flight/cadence/score, forced landings."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((str(r.get("session")), str(r.get("athlete"))), []).append(r)
    rows = []
    for (session, athlete), recs in sorted(groups.items()):
        stances = [r for r in recs if r.get("type") == "stance"]
        landings = [r for r in recs if r.get("type") == "landing"]
        forced = sum(1 for r in landings if r.get("forced_landing"))
        zones = Counter(r["strike_zone"] for r in stances if r.get("strike_zone"))
        rows.append({
            "session": session, "athlete": athlete, "stances": len(stances),
            "left": sum(1 for r in stances if r.get("foot") == "left"),
            "right": sum(1 for r in stances if r.get("foot") == "right"),
            "support_time_s": median_of(r.get("support_time_s") for r in stances),
            "flight_time_s": median_of(r.get("flight_time_s") for r in stances),
            "cadence_spm": median_of(r.get("cadence_spm") for r in stances),
            "pose_score": median_of(r.get("pose_score") for r in stances),
            "forced_landings": forced, "landings": len(landings),
            "strike_zone": zones.most_common(1)[0][0] if zones else None,
            "event_source": Counter(r.get("event_source") for r in stances).most_common(1)[0][0] if stances else None,
        })
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary as a fixed-width table for the terminal."""
    def f(v: Any, digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [f"{'session':<20} {'athlete':<12} {'stances':>7} {'L/R':>9} {'support s':>9} {'flight s':>8} "
             f"{'cadence':>7} {'score':>5} {'forced':>9} {'strike':>8} {'timed by':>10}"]
    for r in rows:
        lines.append(
            f"{r['session'][:20]:<20} {r['athlete'][:12]:<12} {r['stances']:>7} {r['left']:>4}/{r['right']:<4} "
            f"{f(r['support_time_s'], 3):>9} {f(r['flight_time_s'], 3):>8} {f(r['cadence_spm'], 1):>7} "
            f"{f(r['pose_score'], 0):>5} {r['forced_landings']:>4}/{r['landings']:<4} "
            f"{(r['strike_zone'] or '-'):>8} {(r['event_source'] or '-'):>10}")
    return "\n".join(lines)


def output_format(path: str | Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: write records to .jsonl, .csv or .parquet")
    return fmt


def write_records(records: Sequence[Record], path: str | Path) -> int:
    """Records to JSON lines (as published), or to CSV / Parquet (flattened as ``poserun export`` does)."""
    from poserun.services.export import flatten, write_rows

    fmt = output_format(path)
    if fmt == "jsonl":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, separators=(",", ":")) + "\n")
        return len(records)
    return write_rows([flatten(r) for r in records], path, fmt)


def as_frame(records: list[Record]) -> Any:
    """A pandas DataFrame of the flattened records when pandas is installed, else the records."""
    try:
        import pandas as pd
    except ModuleNotFoundError:
        return records
    from poserun.services.export import flatten

    return pd.DataFrame([flatten(r) for r in records])
