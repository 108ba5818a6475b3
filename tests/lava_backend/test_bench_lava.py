"""benchmarks/bench_lava.py: the demo spec, the floor graph's topology, and one short run."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lava")

from netgen import lsnn_spec, rand_input  # noqa: E402

from lava_backend.convert import convert  # noqa: E402

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lava.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_lava", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_lava"] = mod  # Lava's compiler looks the processes' module up there
    spec.loader.exec_module(mod)
    return mod


def _topology(graph):
    """{(producer key, out port, consumer key, in port)} and {key: {port: shape}}."""
    key = {id(p): k.split("null.", 1)[-1] for k, p in graph.processes.items()}
    key.update({id(p): p.name.split("null.", 1)[-1] for p in graph.processes.values()})
    edges, shapes = set(), {}
    for k, p in graph.processes.items():
        k = k.split("null.", 1)[-1]
        shapes[k] = {q.name: tuple(q.shape) for q in p.out_ports.members}
        for op in p.out_ports.members:
            for ip in op.out_connections:
                edges.add((k, op.name, key[id(ip.process)], ip.name))
    return edges, shapes


def test_demo_spec_matches_the_demo_network(bench):
    spec = bench.demo_spec()
    (layer,) = spec.layers
    assert spec.n_input == 39 and layer.n == 200 and layer.kind == "alif"
    assert int((layer.beta > 0).sum()) == 50 and np.allclose(layer.beta[layer.beta > 0], 1.8)
    assert layer.w_in.nnz == 780 and layer.w_rec.nnz == 3980
    assert not np.any(layer.w_rec.rows == layer.w_rec.cols)
    assert spec.readout.kind == "li" and spec.readout.weights.nnz == 39 * 200
    assert (layer.tau_syn_inv, layer.tau_mem_inv, layer.tau_adapt_inv) == (200.0, 50.0, 5.0)


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_floor_mirrors_processes_ports_and_connections(bench, precision, tmp_path):
    spec = lsnn_spec(seed=1, n=12, n_adapt=4, n_input=5, classes=3)
    x = rand_input(1, 3, 10, 5)
    g = convert(spec, x, precision=precision, lanes=2, workdir=str(tmp_path))
    floor = bench._mirror(g)
    assert len(floor.processes) == len(g.processes) == 8
    assert floor.num_steps == g.num_steps and floor.precision == precision
    e1, s1 = _topology(g)
    e2, s2 = _topology(floor)
    assert e1 == e2 and len(e1) == 8
    assert s1 == s2


@pytest.mark.slow
def test_bench_case_runs_demo_floor_tiny_and_what_if(bench):
    spec = bench.demo_spec(n=20, n_alif=5, n_input=4, n_classes=3)
    x, lengths = bench.demo_input(n_seq=2, n_input=4, t_min=15, t_max=20)
    tiny = bench.tiny_spec(spec)
    tiny_x = np.zeros(x.shape[:2] + (1,))
    for precision in ("float", "fixed"):
        quants = (None, None)
        if precision == "fixed":
            from lava_backend.quantize import quantize_network

            quants = (quantize_network(spec, calib_x=x, calib_lengths=lengths),
                      quantize_network(tiny, input_max=1.0, calib_x=tiny_x,
                                       calib_lengths=lengths))
        row = bench.bench_case(spec, x, lengths, precision, 2, 1, quants, tiny, tiny_x,
                               what_if=True, timeout=120)
        for k in ("demo", "floor", "tiny", "demo_lava_sparse"):
            assert row[f"steps_per_second_{k}"] > 0
        assert row["n_processes"] == row["floor_n_processes"] == 8
        assert row["n_connections"] == row["floor_n_connections"] == 8
        assert row["lava_sparse_spikes_equal"]
        assert isinstance(row["target_met"], bool)
    assert "| float | 2 |" in bench.markdown([row | {"precision": "float"}])
