"""Common interface: collate, build_task dispatch, omegaconf compatibility, smoke task learnability."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tasks import Batch, SequenceDataset, TaskConfig, build_task, collate_time_major


def test_collate_time_major():
    ds = SequenceDataset([np.ones((3, 2)), 2 * np.ones((5, 2))], [np.array([0, 1, -1]), np.arange(5)],
                         seq_labels=np.array([4, 7]))
    b = collate_time_major([ds[0], ds[1]])
    assert isinstance(b, Batch)
    assert b.x.shape == (5, 2, 2) and b.x.dtype == torch.float32
    assert b.y.shape == (5, 2) and b.y.dtype == torch.int64
    assert b.x[3:, 0].abs().sum() == 0 and b.y[3:, 0].tolist() == [-1, -1]
    assert b.y[:, 1].tolist() == [0, 1, 2, 3, 4] and b.lengths.tolist() == [3, 5] and b.seq_labels.tolist() == [4, 7]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_time_major)
    assert next(iter(loader)).x.shape == (5, 2, 2)


def test_chunked_keeps_every_frame():
    ds = SequenceDataset([np.arange(7.0)[:, None]], [np.arange(7)], seq_labels=np.array([2]))
    c = ds.chunked(3)
    assert c.lengths.tolist() == [3, 3, 1] and c.sequence_labels.tolist() == [2, 2, 2]
    assert np.concatenate(c.ys).tolist() == list(range(7)) and c.ids == ["0@0", "0@1", "0@2"]


def test_unknown_name_and_structured_config():
    with pytest.raises(ValueError, match=r"task.name: expected one of \['synthetic_timit', 'timit', 'npz', 'smoke'\]"):
        build_task(TaskConfig(name="mnist"))
    cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), {"name": "smoke", "dev_speakers": ["faks0"]})
    assert OmegaConf.to_object(cfg).dev_speakers == ["faks0"]
    with pytest.raises(ValueError, match="task.path: expected a TIMIT copy"):
        build_task(TaskConfig(name="timit"))


def test_smoke_task_is_learnable():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny GRU: one thread avoids oversubscription on a shared machine
    try:
        _train_and_check_smoke()
    finally:
        torch.set_num_threads(threads)


def _train_and_check_smoke():
    task = build_task(TaskConfig(name="smoke", size="tiny", seed=0))
    assert (task.n_features, task.n_classes, task.sequence_task) == (9, 4, False)
    x, y, seq = task.train[0]
    assert x.shape[1] == 9 and (y >= 0).sum() == 4 and seq == -1
    again = build_task(TaskConfig(name="smoke", size="tiny", seed=0))
    assert np.array_equal(again.test.xs[3], task.test.xs[3])
    torch.manual_seed(0)
    rnn, head = torch.nn.GRU(9, 32), torch.nn.Linear(32, 4)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], 1e-2)
    loader = torch.utils.data.DataLoader(task.train, batch_size=32, shuffle=True, collate_fn=collate_time_major)
    for _ in range(15):
        for b in loader:
            loss = torch.nn.functional.cross_entropy(head(rnn(b.x)[0]).flatten(0, 1), b.y.flatten(), ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    b = collate_time_major([task.test[i] for i in range(len(task.test))])
    with torch.no_grad():
        pred = head(rnn(b.x)[0]).argmax(-1)
    acc = (pred == b.y)[b.y >= 0].float().mean().item()
    assert acc > 0.9, acc
