"""poserun: real-time Pose Method running-technique feedback for a whole team.

The shared core lives here (wire protocol, settings, records, CLI); the
services, processors and sinks install as ``poserun.services``,
``poserun.processors`` and ``poserun.sinks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def analyze(*paths: str | Path, config: str | Path | None = None, frame: bool | None = None) -> Any:
    """The fusion processor over recordings, offline (``poserun analyze`` for notebooks).

    Returns the records, as a pandas DataFrame (flattened as ``poserun export`` does) when pandas
    is installed and ``frame`` is not False, else as a list of dicts.
    """
    from poserun.services.analyze import analyze_files, as_frame
    from poserun.settings import load_settings

    records = analyze_files(paths, load_settings(config)).records
    return as_frame(records) if frame is not False else records
