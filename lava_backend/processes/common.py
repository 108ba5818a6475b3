"""Helpers shared by the custom ProcessModels (numpy only).

Lanes and resets
----------------
A process population of ``lanes * n`` neurons holds ``lanes`` independent copies of one
layer (block-diagonal synapses), flattened lane-major (index ``lane * n + j``). Each lane runs
its sequences back to back. ``reset_flags[g, lane]`` is True when a new sequence starts at
lane step ``g`` in that lane. A process of pipeline ``depth`` d handles lane step
``g = time_step - d`` at Lava time step ``time_step`` (1-based).
"""
import numpy as np


def reset_mask(proc_params, time_step, n_total):
    """Boolean [n_total] mask of neurons whose lane starts a sequence at this step, or None."""
    flags = proc_params.get("reset_flags", None)
    if flags is None:
        return None
    g = time_step - int(proc_params.get("depth", 0))
    if g < 0 or g >= flags.shape[0]:
        return None
    row = flags[g]
    if not row.any():
        return None
    return np.repeat(row, n_total // row.shape[0])


def reset_table(proc_params, n_total):
    """All reset steps at once: ``{time_step: int index array of the neurons to reset}``,
    the same neurons ``reset_mask`` returns at that step (steps without resets are absent)."""
    flags = proc_params.get("reset_flags", None)
    if flags is None:
        return {}
    flags = np.asarray(flags, dtype=bool)
    depth = int(proc_params.get("depth", 0))
    per_lane = n_total // flags.shape[1]
    table = {}
    for g in np.flatnonzero(flags.any(axis=1)):
        table[int(g) + depth] = np.flatnonzero(np.repeat(flags[g], per_lane))
    return table


def lava_decay_into(x, k, out, tmp):
    """``out[:] = lava_decay(x, 4096 - k)`` with int64 buffers and no allocation:
    ``x * k`` divided by 4096 rounded toward zero (``sign(d) * (|d| >> 12)``), computed as
    ``(d + ((d >> 63) & 4095)) >> 12``. ``out`` may be ``x``; ``tmp`` must differ from both."""
    np.multiply(x, k, out=out)
    np.right_shift(out, 63, out=tmp)
    np.bitwise_and(tmp, 4095, out=tmp)
    np.add(out, tmp, out=out)
    np.right_shift(out, 12, out=out)
    return out


def wrap_u_inplace(u, tmp_bool):
    """``u[:] = wrap_u(u)`` in place (u > 2**23 -> u - 2**24; else u <= -2**23 -> u + 2**24;
    a value lowered by the first rule is > -2**23, so the second rule cannot undo it)."""
    m = 2 ** 23
    np.greater(u, m, out=tmp_bool)
    np.subtract(u, 2 * m, out=u, where=tmp_bool)
    np.less_equal(u, -m, out=tmp_bool)
    np.add(u, 2 * m, out=u, where=tmp_bool)
    return u


def lava_decay(x, decay_const):
    """Loihi/Lava decay: sign(x) * ((|x| * (4096 - decay_const)) >> 12), int64."""
    x = np.asarray(x, dtype=np.int64)
    d = x * (4096 - int(decay_const))
    return np.sign(d) * np.right_shift(np.abs(d), 12)


def wrap_u(u):
    """Lava's 24-bit wrap of the current u (exactly as PyLifModelBitAcc does it)."""
    m = 2 ** 23
    w = np.where(u > m, u - 2 * m, u)
    return np.where(w <= -m, u + 2 * m, w)


def clip_v(v):
    m = 2 ** 23
    return np.clip(v, -m + 1, m - 1)


def effective_bias(bias_mant, bias_exp):
    bm = np.asarray(bias_mant, dtype=np.int64)
    be = np.asarray(bias_exp, dtype=np.int64)
    return np.where(be >= 0, np.left_shift(bm, np.maximum(be, 0)),
                    np.right_shift(bm, np.maximum(-be, 0)))


ERROR_DIR_ENV = "LAVA_BACKEND_ERROR_DIR"


def guarded(run_spk):
    """Decorator for run_spk: on an exception write the traceback to
    ``$LAVA_BACKEND_ERROR_DIR/error_<pid>.txt`` (the host watchdog polls it, because Lava 0.10
    itself hangs when a ProcessModel raises), then re-raise."""
    import functools
    import os
    import traceback

    @functools.wraps(run_spk)
    def wrapper(self):
        try:
            return run_spk(self)
        except Exception:
            d = os.environ.get(ERROR_DIR_ENV)
            if d:
                with open(os.path.join(d, f"error_{os.getpid()}.txt"), "w") as f:
                    f.write(f"{type(self).__name__} at time step {self.time_step}:\n")
                    f.write(traceback.format_exc())
            raise

    return wrapper
