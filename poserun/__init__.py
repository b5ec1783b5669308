"""poserun: real-time Pose Method running-technique feedback for a whole team.

The shared core lives here (wire protocol, settings, records, CLI); the
services, processors and sinks install as ``poserun.services``,
``poserun.processors`` and ``poserun.sinks``.
"""

__version__ = "0.1.0"
