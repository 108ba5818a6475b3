"""Sequence pooling, the sequence-level loss, the lr schedule and early stopping, on hand-computed cases."""
import math

import pytest
import torch

from spiking_deepr.pooling import pool_logits
from spiking_deepr.schedule import lr_factor
from spiking_deepr.stopping import EarlyStopping
from spiking_deepr.train import batch_loss, epoch_batches
from tasks.base import Batch


def _logits():
    # T = 3 steps, B = 2 sequences (lengths 2 and 3), C = 2 classes; step 2 of sequence 0 is padding
    return torch.tensor([[[1.0, 0.0], [0.0, 3.0]],
                         [[3.0, 2.0], [1.0, 1.0]],
                         [[99.0, -99.0], [2.0, -4.0]]])


@pytest.mark.parametrize("how, expected", [
    ("mean", [[2.0, 1.0], [1.0, 0.0]]),
    ("last", [[3.0, 2.0], [2.0, -4.0]]),
    ("max", [[3.0, 2.0], [2.0, 3.0]]),
])
def test_pooling_over_valid_frames_only(how, expected):
    pooled = pool_logits(_logits(), torch.tensor([2, 3]), how)
    assert torch.equal(pooled, torch.tensor(expected))


def test_sequence_loss_is_cross_entropy_of_pooled_logits():
    class SeqTask:
        sequence_task = True

    logits = _logits().requires_grad_()
    lengths, labels = torch.tensor([2, 3]), torch.tensor([1, 0])
    y = torch.tensor([[1, 0], [1, 0], [-1, 0]])
    batch = Batch(torch.zeros(3, 2, 1), y, lengths, labels)
    loss, counts = batch_loss(logits, batch, SeqTask(), None, "mean", sequence_loss=True)
    # by hand: mean logits [2, 1] (label 1) and [1, 0] (label 0)
    expected = (math.log(1 + math.e) + math.log(1 + math.exp(-1))) / 2
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert (counts.seq_correct, counts.seqs, counts.loss_n) == (1, 2, 2)
    assert (counts.correct, counts.frames) == (2, 5)  # frame hits: none in sequence 0, steps 1 and 2 of sequence 1
    loss.backward()
    assert logits.grad[2, 0].abs().sum() == 0  # padding gets no gradient


def test_lr_schedule_warmup_then_cosine():
    total = 100  # 10 warm-up steps
    assert lr_factor(0, total, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, total, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, total, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(55, total, "cosine", 0.1) == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(100, total, "cosine", 0.1) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(4, total, "constant", 0.1) == pytest.approx(0.5) and lr_factor(50, total, "constant", 0.1) == 1.0
    assert lr_factor(0, total, "cosine", 0.0) == 1.0


def test_early_stopping_patience_min_delta_and_loss_tie_break():
    s = EarlyStopping(patience=2, min_delta=0.01)
    assert s.update(1, 0.50, 1.0)
    assert not s.update(2, 0.505, 1.1) and s.bad_epochs == 1  # within min_delta, higher loss: no progress
    assert s.update(3, 0.50, 0.9)       # tie on the metric, lower loss: new best
    assert not s.update(4, 0.40, 0.5) and s.bad_epochs == 0  # not the best, but the loss fell: patience resets
    assert not s.update(5, 0.49, 0.6) and not s.should_stop
    assert not s.update(6, 0.45, 0.5) and s.should_stop  # 0.5 equals the lowest loss: no progress
    assert s.best_epoch == 3
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()


def test_early_stopping_loss_min_delta_counts_only_real_loss_progress():
    """A run that sits at the best metric while its validation loss creeps down (GunPoint: 5/5 sequences,
    loss falling by ~1e-4 per epoch) stops; decreases add up until they exceed loss_min_delta (Keras'
    semantics), and ties with a lower loss still become the best epoch."""
    s = EarlyStopping(patience=3, loss_min_delta=0.01)
    assert s.update(1, 1.0, 0.100)
    for epoch, loss in ((2, 0.097), (3, 0.094)):
        assert s.update(epoch, 1.0, loss) and s.bad_epochs == epoch - 1  # new best, no progress
    assert s.update(4, 1.0, 0.089) and s.bad_epochs == 0  # 0.011 below the reference 0.100: progress
    for epoch, loss in ((5, 0.088), (6, 0.087), (7, 0.086)):
        s.update(epoch, 1.0, loss)
    assert s.should_stop and s.best_epoch == 7
    m = EarlyStopping(patience=1, loss_min_delta=0.01)
    m.update(1, 0.5, 1.0)
    assert m.update(2, 0.6, 1.2) and m.bad_epochs == 0  # a better metric is progress whatever the loss


def test_length_pooled_batches_cover_the_epoch_with_less_padding():
    lengths = torch.randint(1, 500, (203,), generator=torch.Generator().manual_seed(1)).numpy()
    plain = epoch_batches(lengths, 8, None, torch.Generator().manual_seed(5))
    pooled = epoch_batches(lengths, 8, 4, torch.Generator().manual_seed(5))
    assert pooled == epoch_batches(lengths, 8, 4, torch.Generator().manual_seed(5))  # seeded: resumable
    for batches in (plain, pooled):
        assert sorted(i for b in batches for i in b) == list(range(203)) and max(map(len, batches)) == 8

    def padded(batches):
        return sum(max(lengths[b]) * len(b) for b in batches)

    assert padded(pooled) < 0.8 * padded(plain)
    # each pool of 4 batches (32 sequences of the permutation) was sorted by length before slicing
    order = torch.randperm(203, generator=torch.Generator().manual_seed(5)).tolist()
    pools = [set(order[i:i + 32]) for i in range(0, 203, 32)]
    assert all(any(set(b) <= p for p in pools) for b in pooled)
