"""Run a NetworkSpec on Lava (CPU simulation) and read the results back.

``simulate`` builds the graph (:mod:`.convert`), runs all sequences in one Lava run, and
always stops the runtime (``finally``). With ``isolate=True`` (default) the whole Lava part
runs in a forked child in its own process group; the parent waits at most ``timeout``
seconds and then kills that group (all Lava worker processes with it) and raises
``LavaTimeoutError`` -- a deadlocked Lava run therefore cannot block forever.

The numpy references live in :mod:`.reference` and are re-exported here.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
import traceback
from typing import Optional


from spiking_deepr.errors import UserError
from spiking_deepr.checkpoint import dumps_strict
from spiking_deepr.export import NetworkSpec

from lava_backend.params import SimulationResult, check_input
from lava_backend.reference import reference_fixed, reference_float  # noqa: F401 (re-export)


class LavaTimeoutError(UserError, TimeoutError):
    """The Lava run did not finish within the timeout (its processes were killed)."""


class LavaRunError(RuntimeError):
    """The Lava run raised (message carries the child's traceback)."""


def run_graph(graph, timeout: Optional[float] = None) -> dict:
    """Run a built LavaGraph in this process; the runtime is always stopped. Returns timings.

    Lava 0.10 hangs when a ProcessModel raises (the failing worker never finishes and the
    runtime waits forever). This package's ProcessModels write their traceback to an error
    directory; a watchdog thread polls it (and the ``timeout``), kills the Lava workers this
    run started, and interrupts the main thread with SIGUSR1, whose handler raises
    LavaRunError / LavaTimeoutError even inside Lava's blocking channel wait. The runtime is
    then torn down without ``stop()`` (whose handshake would block on the dead workers).
    From a non-main thread the workers are killed but the wait cannot be interrupted: use
    ``simulate(isolate=True)`` there.
    """
    import threading

    from lava.magma.core.run_conditions import RunSteps

    from lava_backend.processes.common import ERROR_DIR_ENV

    root = graph.root
    errdir = tempfile.mkdtemp(prefix="lava_err_")
    old_env = os.environ.get(ERROR_DIR_ENV)
    os.environ[ERROR_DIR_ENV] = errdir          # inherited by the forked Lava workers
    t0 = time.perf_counter()
    try:
        root.create_runtime(run_cfg=graph.run_cfg())
    finally:
        if old_env is None:
            os.environ.pop(ERROR_DIR_ENV, None)
        else:
            os.environ[ERROR_DIR_ENV] = old_env
    rt = root.runtime
    t1 = time.perf_counter()
    done = threading.Event()
    reason = {}
    clean = False
    main = threading.current_thread() is threading.main_thread()
    main_id = threading.main_thread().ident

    def watchdog():
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.1):
            errs = [f for f in os.listdir(errdir) if f.startswith("error_")]
            if errs:
                with open(os.path.join(errdir, errs[0])) as f:
                    reason["error"] = f.read()
            elif deadline is not None and time.monotonic() > deadline:
                reason["timeout"] = True
            else:
                continue
            _kill_actors(rt)
            if main:
                signal.pthread_kill(main_id, signal.SIGUSR1)
            return

    def on_usr1(signum, frame):
        if "error" in reason:
            raise LavaRunError("a Lava ProcessModel raised:\n" + reason["error"])
        raise LavaTimeoutError(f"Lava run did not finish within {timeout} s")

    old = signal.signal(signal.SIGUSR1, on_usr1) if main else None
    th = threading.Thread(target=watchdog, daemon=True)
    th.start()
    try:
        root.run(condition=RunSteps(num_steps=graph.num_steps))
        clean = True
        t2 = time.perf_counter()
    finally:
        done.set()
        th.join()
        if main:
            signal.signal(signal.SIGUSR1, old)
        if clean:
            stop_runtime(root)
        else:
            _teardown(rt)
        shutil.rmtree(errdir, ignore_errors=True)
    return {"compile_seconds": t1 - t0, "run_seconds": t2 - t1}


def _pid_running(pid) -> bool:
    """True if ``pid`` exists and is not a zombie (does not reap it)."""
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill_actors(rt) -> None:
    """SIGKILL the worker processes this runtime started (only those)."""
    for a in list(rt._messaging_infrastructure.actors):
        if a.pid is not None and _pid_running(a.pid):
            try:
                os.kill(a.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _teardown(rt) -> None:
    """Tear a failed runtime down without the stop() handshake."""
    _kill_actors(rt)
    try:
        rt._messaging_infrastructure.stop()   # joins (dead) workers, shuts shared memory
    except Exception:  # noqa: BLE001
        pass
    rt._is_running = False
    rt._is_started = False
    try:
        rt._watchdog_manager.stop()
    except Exception:  # noqa: BLE001
        pass


def stop_runtime(proc) -> None:
    """Stop the runtime of ``proc`` if it was started (idempotent)."""
    rt = getattr(proc, "runtime", None)
    if rt is not None and getattr(rt, "_is_started", False):
        proc.stop()


def _child(graph, outdir):
    os.setsid()  # own process group: the parent can kill every Lava worker at once
    try:
        timing = run_graph(graph)  # the parent enforces the timeout
        with open(os.path.join(outdir, "timing.json"), "w") as f:
            f.write(dumps_strict(timing))
        os._exit(0)
    except BaseException:  # noqa: BLE001  (report everything to the parent)
        with open(os.path.join(outdir, "error.txt"), "w") as f:
            f.write(traceback.format_exc())
        os._exit(1)


def simulate(spec: NetworkSpec, x, lengths=None, precision: str = "float", quant=None,
             lanes: Optional[int] = None, record_layers: bool = True, timeout: float = 600.0,
             isolate: bool = True, neuron_impl: str = "auto", input_bits: int = 8,
             input_max: Optional[float] = None, fault_step: Optional[int] = None,
             workdir: Optional[str] = None) -> SimulationResult:
    """Simulate ``spec`` on Lava for the sequences x [N, T, F] (``lengths`` [N], default T).

    Returns a SimulationResult with per-layer spikes [N, T, n] (LSTM: h), readout [N, T, C]
    (dequantised for "fixed"), aligned to PyTorch steps, and ``steps_per_second`` (Lava steps
    per second of the run phase) / ``sequence_steps_per_second`` (sum(lengths) / run time).

    precision "fixed": ``quant`` (QuantizedNetwork) or ``quantize_network(spec, input_max,
    input_bits, calib_x=x)``. timeout: seconds for the whole Lava part (isolate=True only).
    """
    from lava_backend.convert import convert

    x, lengths = check_input(spec.n_input, x, lengths)
    if precision == "fixed" and quant is None:
        from lava_backend.quantize import quantize_network

        quant = quantize_network(spec, input_max=input_max, input_bits=input_bits,
                                 calib_x=x, calib_lengths=lengths)
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="lava_backend_")
    try:
        t0 = time.perf_counter()
        graph = convert(spec, x, lengths, precision=precision, quant=quant, lanes=lanes,
                        record_layers=record_layers, workdir=workdir, neuron_impl=neuron_impl,
                        fault_step=fault_step)
        if isolate:
            ctx = mp.get_context("fork")
            p = ctx.Process(target=_child, args=(graph, workdir), daemon=False)
            p.start()
            p.join(timeout)
            if p.is_alive():
                _kill_group(p.pid)
                p.join(5)
                raise LavaTimeoutError(f"Lava run did not finish within {timeout} s; its "
                                       f"process group was killed")
            err = os.path.join(workdir, "error.txt")
            if os.path.exists(err):
                with open(err) as f:
                    raise LavaRunError("Lava run failed in the worker:\n" + f.read())
            if p.exitcode != 0:
                raise LavaRunError(f"Lava worker exited with code {p.exitcode}")
            with open(os.path.join(workdir, "timing.json")) as f:
                timing = json.load(f)
        else:
            timing = run_graph(graph, timeout=timeout)
        total = time.perf_counter() - t0
        res = graph.collect()
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    res.run_seconds = timing["run_seconds"]
    res.build_seconds = total - timing["run_seconds"]
    res.steps_per_second = graph.num_steps / max(timing["run_seconds"], 1e-12)
    res.sequence_steps_per_second = float(lengths.sum()) / max(timing["run_seconds"], 1e-12)
    res.info.update(graph.info)
    res.info.update(timing)
    if quant is not None:
        res.info["quant"] = quant
    return res


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
