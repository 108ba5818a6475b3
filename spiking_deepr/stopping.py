"""Early stopping on a validation metric, with the best epoch remembered.

After every epoch :meth:`EarlyStopping.update` receives the monitored validation metric (higher is
better: sequence accuracy for sequence tasks, frame accuracy otherwise) and the validation loss.

* The **best epoch** (the one whose weights are kept) has the highest metric: an epoch replaces it when
  its metric exceeds the best by more than ``min_delta``, or equals or exceeds it with a lower loss —
  small validation sets (a few sequences) tie on accuracy often.
* **Patience** counts epochs in a row without *progress*: the metric beat the best by more than
  ``min_delta``, or the validation loss fell more than ``loss_min_delta`` below its reference (the
  lowest loss that counted as progress, as Keras' ``min_delta``: slow steady decreases add up until they
  count); training stops after ``patience`` such epochs (``None``: never). A tie on the metric with a
  slightly lower loss still becomes the best epoch, but no longer resets the patience: on GunPoint
  every run reached 5/5 validation sequences and its loss crept down by ~1e-4 per epoch, which kept
  every run going to the end of its budget. The loss is the smoother signal: on a validation split of 50 sequences the accuracy moves in
  steps of 2 points and plateaus for many epochs while the model still improves (PLAID runs stopped
  after 10 epochs, at the second epoch's accuracy, when only the metric counted).
"""
from __future__ import annotations

from typing import Optional


class EarlyStopping:
    """Tracks the best epoch; ``state_dict``/``load_state_dict`` make it resumable."""

    def __init__(self, patience: Optional[int], min_delta: float = 0.0, loss_min_delta: float = 0.0) -> None:
        self.patience, self.min_delta, self.loss_min_delta = patience, min_delta, loss_min_delta
        self.best_metric: Optional[float] = None
        self.best_loss: Optional[float] = None
        self.best_epoch: Optional[int] = None  # 1-based, as in metrics.jsonl
        self.lowest_loss: Optional[float] = None  # the loss reference of the patience (see module doc)
        self.bad_epochs = 0

    def update(self, epoch: int, metric: float, loss: float) -> bool:
        """Record epoch ``epoch`` (1-based); True when it is the new best."""
        first = self.best_metric is None
        metric_progress = first or metric > self.best_metric + self.min_delta
        better = metric_progress or (metric >= self.best_metric and loss < self.best_loss)
        loss_progress = first or loss < self.lowest_loss - self.loss_min_delta
        if better:
            self.best_metric, self.best_loss, self.best_epoch = metric, loss, epoch
        if loss_progress:
            self.lowest_loss = loss
        self.bad_epochs = 0 if metric_progress or loss_progress else self.bad_epochs + 1
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
