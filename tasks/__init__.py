"""Datasets and task definitions: synthetic TIMIT-like corpus (default), real TIMIT, npz, smoke.

Entry point for the trainer: ``build_task(TaskConfig(...)) -> Task``; batch with ``collate_time_major``.
"""

from tasks.base import TASK_NAMES, Batch, SequenceDataset, Task, TaskConfig, build_task, collate_time_major

__all__ = ["TASK_NAMES", "Batch", "SequenceDataset", "Task", "TaskConfig", "build_task", "collate_time_major"]
