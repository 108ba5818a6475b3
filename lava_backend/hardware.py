"""Loihi hardware profiles, a core mapper and resource reports (pure numpy, no lava).

Profiles are YAML data in ``conf/hardware/<name>.yaml`` (each number with its source).

Mapper
------
Each layer (and the readout) gets its own cores; neurons are packed greedily in index order,
a new core is opened when adding a neuron would break a per-core limit:

* neurons per core;
* input axons: every distinct presynaptic source (network input feature, neuron of the
  previous layer, neuron of the layer itself via the recurrent matrix) with at least one
  synapse onto the core needs one input axon;
* synaptic memory: for every input axon, its k synapses onto the core cost
  ``ceil((ceil(k / group) * header + k * (weight + delay + tag + index bits)) / word) * word``
  bits (nengo-loihi's accounting, group = 64, header = 4 + 6 bits, 64-bit words);
* output axons (checked after placement): every neuron needs one axon per distinct
  destination core (its own layer's cores via W_rec, the next layer's, the readout's).

An LSTM unit is counted as one neuron fed by its four gate rows.

Violations (per neuron that cannot fit even alone, per core over a limit, fan-in over
``max_fan_in``, total cores over the chip) are listed as dicts
``{"layer", "neuron", "what", "value", "limit"}``; ``check_fits`` raises HardwareLimitError.

Capabilities
------------
Besides resources, a profile states what its neurons and messages can do (graded spike bits,
neuron models, reset between sequences, synaptic delay, weight and state bits).
`network_requirements` lists what a NetworkSpec needs as converted, `check_capabilities` what
the profile lacks (``{"layer", "capability", "needs", "has"}``, in the report as
``capability_violations``). E.g. Loihi 1 has binary spikes and LIF compartments only: an LSNN
(ALIF neurons) fed with real-valued input needs two things it lacks; a LIF network with
spike-encoded input (``model.input_encoding=delta``) runs on it, its readout read as membrane
state. An LSTM needs an LSTM neuron model, which no neuromorphic profile has (the Lava LSTM
process is a CPU reference).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Union

import numpy as np

from spiking_deepr.errors import UserError
from spiking_deepr.export import ALIFLayerSpec, LSTMLayerSpec, NetworkSpec, SparseWeights

REQUIRED_FIELDS = {
    "name": str, "neurons_per_core": int, "synapse_bits_per_core": int,
    "input_axons_per_core": int, "output_axons_per_core": int, "cores_per_chip": int,
    "weight_bits": int, "max_fan_in": int, "synapse_group_size": int,
    "synapse_group_header_bits": int, "synapse_word_bits": int, "synapse_delay_bits": int,
    "synapse_tag_bits": int, "synapse_index_bits": int,
    # capabilities
    "graded_spike_bits": int, "neuron_models": list, "programmable_neurons": bool, "sequence_reset": str,
    "max_synaptic_delay": int, "state_bits": int,
    # per-operation energy (pJ) and time (ns), for the cost-per-inference estimate
    "energy_per_synop_pj": float, "energy_per_neuron_update_pj": float,
    "energy_per_spike_pj": float, "time_per_synop_ns": float, "time_per_neuron_update_ns": float,
}
#: sequence_reset values: "on_chip" (neurons clear their state at a sequence start, e.g. Lava's
#: LIFReset on Loihi 2) or "host" (only the host can clear state, between runs).
SEQUENCE_RESETS = ("on_chip", "host")
#: What the converter's graphs use: 8-bit weight mantissas, 24-bit u/v, the network input as
#: 8-bit graded payloads (lava_backend.quantize), graded LSTM outputs (real values, 24-bit
#: payloads in Lava's CPU models), no synaptic delay beyond the one step of every hop.
CONVERTER_WEIGHT_BITS = 8
CONVERTER_STATE_BITS = 24
CONVERTER_INPUT_BITS = 8
LSTM_OUTPUT_BITS = 24
PROFILE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "conf", "hardware")


class ProfileError(UserError, ValueError):
    """Unknown profile, unreadable file or missing / invalid field."""


class HardwareLimitError(RuntimeError):
    """The network does not fit the hardware profile; ``.report`` has all violations."""

    def __init__(self, report: dict):
        self.report = report
        lines = [f"network does not fit {report['profile']}: "
                 f"{len(report['violations']) + len(report.get('capability_violations', []))} "
                 f"violation(s)"]
        for v in report.get("capability_violations", []):
            lines.append("  " + describe_capability_violation(v, report["profile"]))
        for v in report["violations"][:50]:
            lines.append(f"  layer {v['layer']!r} neuron {v['neuron']}: {v['what']} = "
                         f"{v['value']} > limit {v['limit']}")
        if len(report["violations"]) > 50:
            lines.append(f"  ... and {len(report['violations']) - 50} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    neurons_per_core: int
    synapse_bits_per_core: int
    input_axons_per_core: int
    output_axons_per_core: int
    cores_per_chip: int
    weight_bits: int
    max_fan_in: int
    synapse_group_size: int
    synapse_group_header_bits: int
    synapse_word_bits: int
    synapse_delay_bits: int
    synapse_tag_bits: int
    synapse_index_bits: int
    graded_spike_bits: int
    neuron_models: tuple
    programmable_neurons: bool
    sequence_reset: str
    max_synaptic_delay: int
    state_bits: int
    energy_per_synop_pj: float
    energy_per_neuron_update_pj: float
    energy_per_spike_pj: float
    time_per_synop_ns: float
    time_per_neuron_update_ns: float

    @property
    def bits_per_synapse(self) -> int:
        return (self.weight_bits + self.synapse_delay_bits + self.synapse_tag_bits
                + self.synapse_index_bits)

    def row_bits(self, k):
        """Synaptic memory of k synapses behind one input axon (vectorised, 0 for k = 0)."""
        k = np.asarray(k, dtype=np.int64)
        groups = -(-k // self.synapse_group_size)
        raw = groups * self.synapse_group_header_bits + k * self.bits_per_synapse
        w = self.synapse_word_bits
        return -(-raw // w) * w

    def core_limits(self):
        """The per-core limits as core-aware training uses them (`spiking_deepr.rewiring.cores`)."""
        from spiking_deepr.rewiring.cores import CoreLimits

        return CoreLimits(neurons=self.neurons_per_core, input_axons=self.input_axons_per_core,
                          synapse_bits=self.synapse_bits_per_core,
                          row_bits=self.row_bits(np.arange(self.neurons_per_core + 1)))


def load_profile(profile: Union[str, dict, HardwareProfile]) -> HardwareProfile:
    """A profile by name ("loihi1", "loihi2" in conf/hardware), YAML path, or dict."""
    if isinstance(profile, HardwareProfile):
        return profile
    if isinstance(profile, dict):
        data, src = dict(profile), "<dict>"
    else:
        path = str(profile)
        if not (path.endswith((".yaml", ".yml")) or os.sep in path):
            cand = os.path.join(PROFILE_DIR, f"{path}.yaml")
            if not os.path.exists(cand):
                known = sorted(f[:-5] for f in os.listdir(PROFILE_DIR) if f.endswith(".yaml")) \
                    if os.path.isdir(PROFILE_DIR) else []
                raise ProfileError(f"unknown hardware profile {path!r}; known: {known}")
            path = cand
        if not os.path.exists(path):
            raise ProfileError(f"hardware profile file not found: {path}")
        import yaml

        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ProfileError(f"hardware profile {path}: expected a YAML mapping, found an unreadable file "
                               f"({' '.join(str(err).split())})") from None
        if not isinstance(data, dict):
            raise ProfileError(f"hardware profile {path}: expected a YAML mapping, found {type(data).__name__}")
        src = path
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise ProfileError(f"hardware profile {src}: missing field(s) {missing}")
    vals = {}
    for k, typ in REQUIRED_FIELDS.items():
        v = data[k]
        if typ is int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ProfileError(f"hardware profile {src}: field {k!r} must be a "
                                   f"non-negative integer, got {v!r}")
            v = int(v)
        elif typ is float:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or v < 0:
                raise ProfileError(f"hardware profile {src}: field {k!r} must be a "
                                   f"non-negative number, got {v!r}")
            v = float(v)
        elif typ is bool:
            if not isinstance(v, bool):
                raise ProfileError(f"hardware profile {src}: field {k!r} must be true or false, got {v!r}")
        elif typ is list:
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                raise ProfileError(f"hardware profile {src}: field {k!r} must be a list of "
                                   f"names, got {v!r}")
            v = tuple(v)
        elif not isinstance(v, str):
            raise ProfileError(f"hardware profile {src}: field {k!r} must be a string, got {v!r}")
        vals[k] = v
    if vals["sequence_reset"] not in SEQUENCE_RESETS:
        raise ProfileError(f"hardware profile {src}: field 'sequence_reset' must be one of "
                           f"{SEQUENCE_RESETS}, got {vals['sequence_reset']!r}")
    for k in ("neurons_per_core", "synapse_bits_per_core", "input_axons_per_core",
              "output_axons_per_core", "cores_per_chip", "weight_bits", "synapse_group_size",
              "synapse_word_bits"):
        if vals[k] == 0:
            raise ProfileError(f"hardware profile {src}: field {k!r} must be > 0")
    return HardwareProfile(**vals)


def fan_in_cap(profile) -> int:
    """Largest per-neuron fan-in (all incoming synapses: input + recurrent) that always maps.

    A neuron with fan-in K from K distinct sources needs K input axons and, in the worst
    case (no other neuron of its core shares a source), K synapse lists of one synapse each,
    i.e. ``K * row_bits(1)`` bits. With ``K <= min(max_fan_in, input_axons_per_core,
    synapse_bits_per_core // row_bits(1))`` every neuron fits a core on its own, so the
    greedy mapper can always place it (per-neuron conversion never fails; whether the whole
    network fits the chip's core count is a separate, reported question). A DEEP R trainer
    should cap each neuron's fan-in at this number.
    """
    p = load_profile(profile)
    return int(min(p.max_fan_in, p.input_axons_per_core,
                   p.synapse_bits_per_core // int(p.row_bits(1))))


def _incoming(spec: NetworkSpec):
    """Per mapped population: (name, n, [(source_id_offset, SparseWeights)], kind)."""
    pops = []
    sources = spec.n_input
    prev_off = 0                     # global source ids: input features first
    for ls in spec.layers:
        if isinstance(ls, LSTMLayerSpec):
            # an LSTM unit is counted as one "neuron" fed by its four gate rows (i, f, g, o)
            own = sources
            pops.append((ls.name, ls.hidden, [(prev_off, _gates_per_unit(ls.w_ih, ls.hidden)),
                                              (own, _gates_per_unit(ls.w_hh, ls.hidden))],
                         "lstm", own))
            prev_off = own
            sources += ls.hidden
            continue
        own = sources
        mats = [(prev_off, ls.w_in)]
        if ls.w_rec is not None:
            mats.append((own, ls.w_rec))
        pops.append((ls.name, ls.n, mats, ls.kind, own))
        prev_off = own
        sources += ls.n
    ro = spec.readout
    pops.append(("readout", ro.weights.shape[0], [(prev_off, ro.weights)], "readout", sources))
    return pops, sources + ro.weights.shape[0]


def _gates_per_unit(w: SparseWeights, hidden: int) -> SparseWeights:
    """[4H, n_in] gate matrix -> [H, n_in] entries per unit (row g*H + j belongs to unit j)."""
    return SparseWeights((hidden, w.shape[1]), w.rows % hidden, w.cols, w.values)


def network_requirements(spec: NetworkSpec) -> List[dict]:
    """What running ``spec`` as the converter builds it needs from a chip, per layer.

    Each entry is ``{"layer", "capability", "needs"}`` with capability one of ``neuron_model``
    (needs: "lif" | "alif" | "lstm"), ``programmable_neurons`` (neuron variants a fixed-function
    compartment cannot do: reset by subtraction, a refractory period holding v), ``graded_spikes`` (needs: payload bits of the layer's
    input: the network input unless it is spike-encoded, LSTM outputs), ``weight_bits``,
    ``state_bits``, ``synaptic_delay`` (steps beyond the one every hop adds) and
    ``reset_between_sequences`` (every stateful population starts each sequence from rest).
    The readout is a non-spiking LIF compartment whose membrane state is read by the host."""
    req = []
    graded_bits = 0 if spec.input_spikes else CONVERTER_INPUT_BITS
    for ls in spec.layers:
        if isinstance(ls, LSTMLayerSpec):
            model = "lstm"
        elif isinstance(ls, ALIFLayerSpec) and ls.beta is not None and np.any(np.asarray(ls.beta) > 0):
            model = "alif"
        else:
            model = "lif"
        req.append({"layer": ls.name, "capability": "neuron_model", "needs": model})
        variants = [text for on, text in (
            (getattr(ls, "reset", "value") == "subtract", "reset by subtraction"),
            (getattr(ls, "refractory", 0) > 0, "a refractory period that holds v")) if on]
        if variants:
            req.append({"layer": ls.name, "capability": "programmable_neurons",
                        "needs": " and ".join(variants)})
        if graded_bits:
            req.append({"layer": ls.name, "capability": "graded_spikes", "needs": graded_bits})
        graded_bits = LSTM_OUTPUT_BITS if model == "lstm" else 0
    req.append({"layer": "readout", "capability": "neuron_model", "needs": "lif"})
    if graded_bits:
        req.append({"layer": "readout", "capability": "graded_spikes", "needs": graded_bits})
    for name in [ls.name for ls in spec.layers] + ["readout"]:
        req.append({"layer": name, "capability": "reset_between_sequences", "needs": "host"})
    req += [{"layer": None, "capability": "weight_bits", "needs": CONVERTER_WEIGHT_BITS},
            {"layer": None, "capability": "state_bits", "needs": CONVERTER_STATE_BITS},
            {"layer": None, "capability": "synaptic_delay", "needs": 0}]
    return req


def check_capabilities(spec: NetworkSpec, profile) -> List[dict]:
    """Every requirement of ``spec`` (see `network_requirements`) that ``profile`` lacks, as
    ``{"layer", "capability", "needs", "has"}``."""
    p = load_profile(profile)
    has = {"neuron_model": list(p.neuron_models), "graded_spikes": p.graded_spike_bits,
           "weight_bits": p.weight_bits, "state_bits": p.state_bits,
           "synaptic_delay": p.max_synaptic_delay, "reset_between_sequences": p.sequence_reset,
           "programmable_neurons": p.programmable_neurons}
    missing = []
    for r in network_requirements(spec):
        cap, need = r["capability"], r["needs"]
        if cap == "neuron_model":
            ok = need in p.neuron_models
        elif cap == "reset_between_sequences":
            ok = True  # "host" is enough: one sequence per run, state cleared in between
        elif cap == "programmable_neurons":
            ok = p.programmable_neurons
        else:
            ok = has[cap] >= need
        if not ok:
            missing.append({**r, "has": has[cap]})
    return missing


def describe_capability_violation(v: dict, profile_name: str) -> str:
    """One line for a capability violation."""
    where = "network" if v["layer"] is None else f"layer {v['layer']!r}"
    cap, need, has = v["capability"], v["needs"], v["has"]
    if cap == "neuron_model":
        text = f"needs {need.upper()} neurons; {profile_name} has {', '.join(m.upper() for m in has)}"
    elif cap == "programmable_neurons":
        text = f"needs {need}; {profile_name}'s neurons are fixed-function (hard reset to 0)"
    elif cap == "graded_spikes":
        text = (f"receives {need}-bit graded values; {profile_name} "
                + ("has binary spikes only" if has == 0 else f"carries {has}-bit graded spikes"))
    else:
        text = f"needs {cap} = {need}; {profile_name} has {has}"
    return f"{where}: {cap}: {text}"


def map_network(spec: NetworkSpec, profile, num_chips: int = 1) -> dict:
    """Pack ``spec`` onto cores of ``profile``; return the resource report (never raises for
    limits -- see ``check_fits``)."""
    p = load_profile(profile)
    pops, n_sources = _incoming(spec)
    violations: List[dict] = []
    layers = []
    core_of = np.full(n_sources, -1, dtype=np.int64)   # global neuron id -> core
    next_core = 0
    total_syn = 0
    max_fan_in_all = 0
    for name, n, mats, kind, own in pops:
        # incoming lists per postsynaptic neuron: global source ids
        src_lists = [[] for _ in range(n)]
        for off, w in mats:
            order = np.argsort(w.rows, kind="stable")
            rows, cols = w.rows[order], w.cols[order] + off
            bounds = np.searchsorted(rows, np.arange(n + 1))
            for j in range(n):
                src_lists[j].append(cols[bounds[j]:bounds[j + 1]])
        src = [np.concatenate(s) if s else np.zeros(0, np.int64) for s in src_lists]
        fan_in = np.array([s.size for s in src], dtype=np.int64)
        total_syn += int(fan_in.sum())
        mfi = int(fan_in.max(initial=0))
        max_fan_in_all = max(max_fan_in_all, mfi)
        for j in np.nonzero(fan_in > p.max_fan_in)[0]:
            violations.append({"layer": name, "neuron": int(j), "what": "fan_in",
                               "value": int(fan_in[j]), "limit": p.max_fan_in})
        # greedy packing
        cores = []                      # list of dicts
        cnt = np.zeros(n_sources, dtype=np.int64)
        cur = None

        def close(c):
            if c is not None and c["neurons"]:
                cores.append(c)

        def new_core():
            nonlocal next_core
            c = {"core": next_core, "neurons": 0, "first": None, "axons": 0, "bits": 0,
                 "synapses": 0, "touched": []}
            next_core += 1
            return c

        cur = new_core()
        for j in range(n):
            s = src[j]
            uniq, k = np.unique(s, return_counts=True)
            old = cnt[uniq]
            d_axons = int(np.sum(old == 0))
            d_bits = int(np.sum(p.row_bits(old + k) - p.row_bits(old)))
            fits = (cur["neurons"] + 1 <= p.neurons_per_core
                    and cur["axons"] + d_axons <= p.input_axons_per_core
                    and cur["bits"] + d_bits <= p.synapse_bits_per_core)
            if not fits and cur["neurons"] > 0:
                cnt[np.concatenate(cur["touched"])] = 0
                close(cur)
                cur = new_core()
                old = np.zeros_like(k)
                d_axons = int(uniq.size)
                d_bits = int(np.sum(p.row_bits(k)))
            if cur["neurons"] == 0:
                # a neuron that cannot fit even alone
                if d_axons > p.input_axons_per_core:
                    violations.append({"layer": name, "neuron": j, "what": "input_axons",
                                       "value": d_axons, "limit": p.input_axons_per_core})
                if d_bits > p.synapse_bits_per_core:
                    violations.append({"layer": name, "neuron": j, "what": "synapse_bits",
                                       "value": d_bits, "limit": p.synapse_bits_per_core})
                cur["first"] = j
            cnt[uniq] = old + k
            cur["touched"].append(uniq)
            cur["neurons"] += 1
            cur["axons"] += d_axons
            cur["bits"] += d_bits
            cur["synapses"] += int(s.size)
            core_of[own + j] = cur["core"]
        if cur["touched"]:
            cnt[np.concatenate(cur["touched"])] = 0
        close(cur)
        for c in cores:
            c.pop("touched")
        layers.append({"name": name, "kind": kind, "neurons": n, "cores": len(cores),
                       "synapses": int(fan_in.sum()), "max_fan_in": mfi,
                       "core_list": cores, "_mats": mats, "_own": own})
    # output axons: per source neuron, number of distinct destination cores
    out_axons = {}
    for L in layers:
        dst_core_by_neuron = core_of[L["_own"]:L["_own"] + L["neurons"]]
        for off, w in L.pop("_mats"):
            src_ids = w.cols + off
            pairs = np.unique(np.stack([src_ids, dst_core_by_neuron[w.rows]]), axis=1)
            np.add.at(out_axons.setdefault("all", np.zeros(n_sources, np.int64)), pairs[0], 1)
    per_src = out_axons.get("all", np.zeros(n_sources, np.int64))
    for L in layers:
        own = L.pop("_own")
        for c in L["core_list"]:
            ids = own + np.nonzero(core_of[own:own + L["neurons"]] == c["core"])[0]
            c["out_axons"] = int(per_src[ids].sum())
            if c["out_axons"] > p.output_axons_per_core:
                violations.append({"layer": L["name"], "neuron": f"core {c['core']}",
                                   "what": "output_axons", "value": c["out_axons"],
                                   "limit": p.output_axons_per_core})
        L["max_synapse_bits"] = max((c["bits"] for c in L["core_list"]), default=0)
        L["max_input_axons"] = max((c["axons"] for c in L["core_list"]), default=0)
        L["max_output_axons"] = max((c["out_axons"] for c in L["core_list"]), default=0)
    cores_total = next_core
    if cores_total > p.cores_per_chip * num_chips:
        violations.append({"layer": None, "neuron": None, "what": "cores",
                           "value": cores_total, "limit": p.cores_per_chip * num_chips})
    missing = check_capabilities(spec, p)
    return {"profile": p.name, "fits": not violations and not missing, "cores": cores_total,
            "neurons": int(sum(L["neurons"] for L in layers)), "synapses": total_syn,
            "max_fan_in": max_fan_in_all, "fan_in_cap": fan_in_cap(p),
            "capability_violations": missing, "violations": violations,
            "requirements": network_requirements(spec),
            "sequence_reset": p.sequence_reset, "layers": layers}


def check_fits(spec: NetworkSpec, profile, num_chips: int = 1) -> dict:
    """``map_network`` and raise HardwareLimitError listing every violation if it does not fit."""
    rep = map_network(spec, profile, num_chips)
    if not rep["fits"]:
        raise HardwareLimitError(rep)
    return rep
