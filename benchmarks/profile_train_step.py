"""Where one training step's time goes: torch profiler over 5 steps (forward, loss, backward) of one
batch of the `bench_train.py` synthetic corpus, 1 thread, after 3 warm-up steps.

    python benchmarks/profile_train_step.py [ALGORITHM] [CONNECTIVITY] [NETWORK]

(defaults: deepr 0.01 lstm). Prints the operators by self CPU time, grouped by input shape; the
README's "what limits the 1 % epoch" figures come from `benchmarks/results/profile_train_step.txt`.
"""
import sys
import warnings
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import _overrides  # noqa: E402

from spiking_deepr import train as tr  # noqa: E402
from spiking_deepr.config import load_config  # noqa: E402
from tasks.base import collate_time_major  # noqa: E402


def main(algorithm: str = "deepr", connectivity: str = "0.01", network: str = "lstm") -> None:
    warnings.filterwarnings("ignore")
    cfg = load_config(_overrides("small", network, algorithm, float(connectivity), 1, 32))
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    tr.keep_freed_memory()
    task = tr.build_run_task(cfg)
    fold = None if task.eval_fold is None else torch.as_tensor(task.eval_fold)
    model = tr.build_model(cfg, task)
    batch = collate_time_major([task.train[i] for i in range(32)])
    print(f"{network} {algorithm} {connectivity}: batch [T, B, F] = {list(batch.x.shape)}")

    def step():
        loss, _ = tr.batch_loss(model(batch.x, batch.lengths), batch, task, fold, cfg.train.pooling,
                                cfg.train.sequence_loss)
        loss.backward()

    for _ in range(3):
        step()
    with torch.profiler.profile(record_shapes=True) as prof:
        for _ in range(5):
            step()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=14,
                                                              max_name_column_width=30, max_shapes_column_width=60))


if __name__ == "__main__":
    main(*sys.argv[1:])
