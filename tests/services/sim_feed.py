"""A simulated team's messages through one ``FusionService`` by ``handle()``, in publication order."""

from __future__ import annotations

from typing import Any

from poserun.services.fusion import FusionService
from poserun.services.sim.team import SimTeam
from poserun.settings import AthleteSettings, SimSettings, load_settings


def feed(*, athletes: int, seed: int, seconds: float, bundle: bool = True,
         partition: tuple[int, int] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records and the final counters; the team is configured with its simulated bodies, the
    clock is 0 (deterministic records) and each message arrives at its due time."""
    team = SimTeam("s", SimSettings(athletes=athletes, seed=seed, bundle=bundle,
                                    profiles=["pose", "forced_lander", "heel_striker"]))
    settings = load_settings(overrides={"athletes": [AthleteSettings(
        id=s.athlete_id, body_mass_kg=s.body_mass_kg, leg_length_m=s.leg_length_m).model_dump() for s in team.specs]})
    svc = FusionService(settings, session="s", clock=lambda: 0, partition=partition)
    for m in team.meta_messages():
        svc.handle(m.topic, m.payload)
    records = []
    for _ in range(int(seconds * 2)):
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            records += svc.handle(m.topic, m.payload, 10**18 + m.at_ns)
    return records, svc.snapshot()
