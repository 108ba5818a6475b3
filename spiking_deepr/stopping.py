"""Early stopping on a validation metric, with the best epoch remembered.

After every epoch :meth:`EarlyStopping.update` receives the monitored validation metric (higher is
better: sequence accuracy for sequence tasks, frame accuracy otherwise) and the validation loss. An
epoch is a new best when its metric exceeds the best by more than ``min_delta``, or when it equals or
exceeds the best metric with a lower loss — small validation sets (a few sequences) tie on accuracy
often, and the loss then still tells a better-calibrated model from a worse one. Training stops after
``patience`` epochs in a row without a new best (``None``: never).
"""
from __future__ import annotations

from typing import Optional


class EarlyStopping:
    """Tracks the best epoch; ``state_dict``/``load_state_dict`` make it resumable."""

    def __init__(self, patience: Optional[int], min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_metric: Optional[float] = None
        self.best_loss: Optional[float] = None
        self.best_epoch: Optional[int] = None  # 1-based, as in metrics.jsonl
        self.bad_epochs = 0

    def update(self, epoch: int, metric: float, loss: float) -> bool:
        """Record epoch ``epoch`` (1-based); True when it is the new best."""
        better = (self.best_metric is None or metric > self.best_metric + self.min_delta
                  or (metric >= self.best_metric and loss < self.best_loss))
        if better:
            self.best_metric, self.best_loss, self.best_epoch, self.bad_epochs = metric, loss, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best_metric": self.best_metric, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best_metric, self.best_loss = state["best_metric"], state["best_loss"]
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
