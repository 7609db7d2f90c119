"""Guard patrol tours (电子巡更): configuration models and the pure tour engine."""

from rules.patrol.config import PatrolCheckpoint, PatrolConfig, PatrolGuard, PatrolRoute
from rules.patrol.engine import CheckpointRecord, CheckpointState, PatrolEngine, PatrolEvent, Tour, starts_after

__all__ = [
    "CheckpointRecord",
    "CheckpointState",
    "PatrolCheckpoint",
    "PatrolConfig",
    "PatrolEngine",
    "PatrolEvent",
    "PatrolGuard",
    "PatrolRoute",
    "Tour",
    "starts_after",
]
