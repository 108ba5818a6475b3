"""Cost per inference in the NeuroBench sense (pure numpy, no lava).

Counted from a network's activity on real sequences (one inference = one sequence):

* **connection sparsity**: 1 - active connections / entries of the dense matrices;
* **activation sparsity**: 1 - spikes / (neurons x steps) over the spiking layers, and per layer
  the rate in spikes per neuron per step;
* **synaptic operations per sample**: *effective* operations — every nonzero presynaptic value at
  a step costs one operation per outgoing connection (spikes x fan-out), accumulates (ACs) for
  binary spikes, multiply-accumulates (MACs) for graded values (real-valued network input, LSTM
  outputs) — against the *dense-equivalent* MACs (every entry of every dense matrix, every step);
* **energy and latency estimates** from the profile's per-operation figures (each sourced in
  ``conf/hardware/*.yaml``): energy = synaptic ops x E_synop + neuron updates x E_neuron +
  spikes sent x E_spike; latency = steps x the slowest population's step time, where a
  population's synaptic ops are spread evenly over its cores (from `sdr convert`'s mapper), cores
  work in parallel and each core updates its neurons one after the other. Routing, barrier
  synchronisation and host I/O are not included: both are estimates, not measurements.

Matrix by matrix: layer l's input matrix is driven by the network input (l = 0) or layer l-1's
output, its recurrent matrix by its own output, the readout by the last layer's output.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from spiking_deepr.export import LSTMLayerSpec, NetworkSpec

from .hardware import load_profile, map_network


def _matrices(spec: NetworkSpec):
    """(name, weights, driver) per matrix; driver -1 = network input, l = layer l's output."""
    out = []
    for l, ls in enumerate(spec.layers):
        if isinstance(ls, LSTMLayerSpec):
            out += [(f"{ls.name}.w_in", ls.w_ih, l - 1), (f"{ls.name}.w_rec", ls.w_hh, l)]
        else:
            out.append((f"{ls.name}.w_in", ls.w_in, l - 1))
            if ls.w_rec is not None:
                out.append((f"{ls.name}.w_rec", ls.w_rec, l))
    out.append(("readout", spec.readout.weights, len(spec.layers) - 1))
    return out


class CostCounter:
    """Accumulates activity over batches of sequences; :meth:`report` gives the cost per inference."""

    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        self.mats = _matrices(spec)
        self.fan_out = [w.fan_out().astype(np.float64) for _, w, _ in self.mats]
        self.sequences = 0
        self.steps = 0
        self.ops = np.zeros(len(self.mats))             # effective operations per matrix
        self.spikes = np.zeros(len(spec.layers))        # nonzero outputs per layer

    def add(self, x: np.ndarray, lengths: np.ndarray, layers: Sequence[np.ndarray]) -> None:
        """x [N, T, F] network input, lengths [N], layers: per layer output [N, T * n_repeat, n]
        (with ``n_repeat`` > 1 every frame is presented n_repeat steps: its input counts n_repeat
        times, and steps are simulation steps)."""
        r = int(getattr(self.spec, "n_repeat", 1))
        lengths = np.asarray(lengths)

        def counts(a, reps):  # nonzero values per presynaptic unit within each sequence's length
            a = np.asarray(a)
            valid = np.arange(a.shape[1])[None, :] < (lengths * reps)[:, None]
            return ((a != 0) & valid[..., None]).sum(axis=(0, 1)).astype(np.float64)

        per_unit = [counts(x, 1) * r] + [counts(a, r) for a in layers]
        for i, (_, _, driver) in enumerate(self.mats):
            self.ops[i] += float(per_unit[driver + 1] @ self.fan_out[i])
        for l in range(len(layers)):
            self.spikes[l] += per_unit[l + 1].sum()
        self.sequences += len(lengths)
        self.steps += int(lengths.sum()) * r

    def report(self, profile="loihi2", mapping: Optional[dict] = None) -> Dict:
        """Cost per inference (per sequence) on ``profile``; ``mapping``: its `map_network` report
        (computed if not given) for the cores of each population."""
        p = load_profile(profile)
        spec = self.spec
        mapping = mapping or map_network(spec, p)
        n_seq = max(self.sequences, 1)
        steps = self.steps / n_seq
        graded = [driver == -1 and not spec.input_spikes
                  or driver >= 0 and isinstance(spec.layers[driver], LSTMLayerSpec)
                  for _, _, driver in self.mats]
        ops = self.ops / n_seq
        dense = [w.shape[0] * w.shape[1] * steps for _, w, _ in self.mats]
        nnz = [w.nnz for _, w, _ in self.mats]
        spiking = [l for l, ls in enumerate(spec.layers) if not isinstance(ls, LSTMLayerSpec)]
        sizes = [int(getattr(ls, "n", getattr(ls, "hidden", 0))) for ls in spec.layers]
        neuron_updates = (sum(sizes) + spec.n_classes) * steps
        spikes = float(sum(self.spikes[l] for l in spiking)) / n_seq
        spiking_slots = sum(sizes[l] for l in spiking) * steps
        per_layer = {spec.layers[l].name: {
            "spikes_per_neuron_per_step": float(self.spikes[l] / max(sizes[l] * self.steps, 1)),
            "kind": spec.layers[l].kind} for l in range(len(spec.layers))}
        acs = float(sum(o for o, g in zip(ops, graded) if not g))
        macs = float(sum(o for o, g in zip(ops, graded) if g))
        energy_pj = ((acs + macs) * p.energy_per_synop_pj + neuron_updates * p.energy_per_neuron_update_pj
                     + spikes * p.energy_per_spike_pj)
        # step time: per population, its ops spread over its cores, its neurons updated per core
        cores = {L["name"]: max(L["cores"], 1) for L in mapping["layers"]}
        pop_ops: Dict[str, float] = {}
        for (name, _, _), o in zip(self.mats, ops):
            pop = name.split(".")[0]
            pop_ops[pop] = pop_ops.get(pop, 0.0) + o / max(steps, 1e-12)
        pop_neurons = {**{ls.name: sizes[l] for l, ls in enumerate(spec.layers)}, "readout": spec.n_classes}
        step_ns = max((pop_ops.get(pop, 0.0) / cores.get(pop, 1)) * p.time_per_synop_ns
                      + -(-pop_neurons[pop] // cores.get(pop, 1)) * p.time_per_neuron_update_ns
                      for pop in pop_neurons)
        return {
            "profile": p.name,
            "sequences": int(self.sequences),
            "steps_per_sample": steps,
            "connection_sparsity": 1.0 - sum(nnz) / sum(w.shape[0] * w.shape[1] for _, w, _ in self.mats),
            "activation_sparsity": 1.0 - spikes / max(spiking_slots, 1e-12) if spiking else None,
            "spikes_per_neuron_per_step": spikes / max(spiking_slots, 1e-12) if spiking else None,
            "layers": per_layer,
            "synaptic_ops_per_sample": {"effective_acs": acs, "effective_macs": macs,
                                        "effective_total": acs + macs,
                                        "dense_equivalent_macs": float(sum(dense))},
            "ops_fraction_of_dense": (acs + macs) / max(sum(dense), 1e-12),
            "matrices": {name: {"effective_ops": float(o), "dense_macs": float(d), "graded_input": bool(g)}
                         for (name, _, _), o, d, g in zip(self.mats, ops, dense, graded)},
            "neuron_updates_per_sample": float(neuron_updates),
            "spikes_per_sample": spikes,
            "energy_per_sample_uj": energy_pj * 1e-6,
            "latency_per_sample_us": steps * step_ns * 1e-3,
            "figures": {k: getattr(p, k) for k in ("energy_per_synop_pj", "energy_per_neuron_update_pj",
                                                   "energy_per_spike_pj", "time_per_synop_ns",
                                                   "time_per_neuron_update_ns")},
            "note": "estimates from per-operation figures (sources in the profile); no routing, "
                    "synchronisation or host I/O",
        }
