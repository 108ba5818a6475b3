"""spiking_deepr: DEEP R training of sparse recurrent networks for neuromorphic hardware."""
import os as _os

# Numba's sparse kernels and torch's dense ops alternate every time step. With busy-waiting OpenMP
# pools, the idle pool's spinning threads steal both cores from the other (measured: a [32, 4096]
# matmul right after a numba kernel went from 42 µs to 814 µs). Sleeping waits fix that; with them,
# numba's OpenMP layer launches kernels faster than its workqueue layer (100 recurrent sparse steps:
# 0.39 s vs 0.50 s); the priority list falls back to workqueue where no OpenMP runtime exists.
# These only take effect if set before torch / numba start their pools: import spiking_deepr first.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")

__version__ = "0.1.0"
