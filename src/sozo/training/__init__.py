"""The one trainer shared by every family."""
from .trainer import Position, Trainer, resolve_device

__all__ = ["Trainer", "Position", "resolve_device"]
