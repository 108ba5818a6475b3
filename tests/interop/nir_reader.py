"""An independent NIR reader for the tests: nirtorch 2.6's graph interpreter (``nir_to_torch``, which
handles recurrent edges since nirtorch PR #48) with Norse 1.1.0's own node importer.

Norse's own ``from_nir`` (nirtorch's older ``load``) reads our recurrent CubaLIF graphs correctly with
nirtorch 2.6 (test_nir checks it), but it has no mapping for LI/CubaLI and silently skips those nodes.
Norse maps CubaLIF to its LIBoxCell (synapse) + LIFBoxCell (membrane) pair; LI/CubaLI are built here
from the same Norse box cells. Nothing here uses
spiking_deepr's code. Runs in float64, one step per call; returns the outputs and each spiking node's
spikes.
"""
from functools import partial

import nir
import nirtorch
import torch
from norse.torch.module import leaky_integrator_box as li_box
from norse.torch.utils.import_nir import _import_norse_module


class _LeakyIntegrator(torch.nn.Module):
    """NIR LI / CubaLI with Norse's forward-Euler box cells (the synapse of CubaLI as in Norse's CubaLIF)."""

    def __init__(self, node, dt):
        super().__init__()
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        cuba = isinstance(node, nir.CubaLI)
        self.w_in = t(node.w_in) if cuba else None
        self.r = t(node.r)
        self.syn = (li_box.LIBoxCell(li_box.LIBoxParameters(tau_mem_inv=1 / t(node.tau_syn), v_leak=t(0.0)), dt=dt)
                    if cuba else None)
        self.mem = li_box.LIBoxCell(li_box.LIBoxParameters(tau_mem_inv=1 / t(node.tau_mem if cuba else node.tau),
                                                           v_leak=t(node.v_leak)), dt=dt)

    def forward(self, x, state=None):
        s_syn, s_mem = (None, None) if state is None else state
        if self.syn is not None:
            x, s_syn = self.syn(self.w_in * x, s_syn)
        v, s_mem = self.mem(self.r * x, s_mem)
        return v, (s_syn, s_mem)


def load(graph, dt):
    norse_node = partial(_import_norse_module, dt=dt)
    node_map = {**nirtorch.nir_interpreter.DEFAULT_MAP, nir.CubaLIF: norse_node, nir.LIF: norse_node,
                nir.Affine: norse_node, nir.Linear: norse_node,
                nir.LI: partial(_LeakyIntegrator, dt=dt), nir.CubaLI: partial(_LeakyIntegrator, dt=dt)}
    return nirtorch.nir_to_torch(graph, node_map).double()


def run(graph, x, dt, spiking=()):
    """x [T, B, F] -> (outputs [T, B, C], {node: spikes [T, B, n]}) for the named spiking nodes."""
    module = load(graph, dt)
    state, ys, zs = None, [], {k: [] for k in spiking}
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(x[t].double(), state=state)
            ys.append(y)
            for k in spiking:
                zs[k].append(state[nirtorch.nir_interpreter._sanitize_name(k) + "_prev_output"])
    return torch.stack(ys), {k: torch.stack(v) for k, v in zs.items()}
