"""Early stopping on a validation metric, with the best epoch remembered.

After every epoch :meth:`EarlyStopping.update` receives the monitored validation metric (higher is
better: sequence accuracy for sequence tasks, frame accuracy otherwise) and the validation loss.

* The **best epoch** (the one whose weights are kept) has the highest metric: an epoch replaces it when
  its metric exceeds the best by more than ``min_delta``, or equals or exceeds it with a lower loss —
  small validation sets (a few sequences) tie on accuracy often.
* **Patience** counts epochs in a row in which neither a new best epoch was found nor the validation
  loss fell below its lowest value so far; training stops after ``patience`` such epochs (``None``:
  never). The loss is the smoother signal: on a validation split of 50 sequences the accuracy moves in
  steps of 2 points and plateaus for many epochs while the model still improves (PLAID runs stopped
  after 10 epochs, at the second epoch's accuracy, when only the metric counted).
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
        self.lowest_loss: Optional[float] = None
        self.bad_epochs = 0

    def update(self, epoch: int, metric: float, loss: float) -> bool:
        """Record epoch ``epoch`` (1-based); True when it is the new best."""
        better = (self.best_metric is None or metric > self.best_metric + self.min_delta
                  or (metric >= self.best_metric and loss < self.best_loss))
        progress = better or loss < self.lowest_loss
        if better:
            self.best_metric, self.best_loss, self.best_epoch = metric, loss, epoch
        self.lowest_loss = loss if self.lowest_loss is None else min(loss, self.lowest_loss)
        self.bad_epochs = 0 if progress else self.bad_epochs + 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best_metric": self.best_metric, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "lowest_loss": self.lowest_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best_metric, self.best_loss = state["best_metric"], state["best_loss"]
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        self.lowest_loss = state["lowest_loss"]
