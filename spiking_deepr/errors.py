"""The base class of every error caused by the user's input rather than by a bug.

A :class:`UserError` carries a message that fits on one line and names the file or field, what was
expected and what was found. ``sdr`` prints it as ``sdr COMMAND: error: MESSAGE`` and exits with
code 2 (no traceback unless ``--debug`` or ``SDR_DEBUG=1``); any other exception is a bug and keeps
its traceback. Subclasses also derive from the built-in type a caller would expect (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` keeps working.

This module imports nothing, so ``tasks`` and ``lava_backend`` can use it without pulling in torch.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a config value, a data or checkpoint file, a run directory, a command-line argument."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class UserFileExistsError(UserError, FileExistsError):
    """A path the user named already holds something that must not be overwritten."""


class TrainingDivergedError(UserError, FloatingPointError):
    """The loss, a gradient or a weight became NaN or infinite (usually: the learning rate is too high)."""
