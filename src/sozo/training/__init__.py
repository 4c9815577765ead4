"""The one trainer shared by every family."""
from .trainer import Position, Trainer

__all__ = ["Trainer", "Position"]
