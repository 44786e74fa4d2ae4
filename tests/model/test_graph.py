"""The k-NN periodic graph: neighbour shells, ties, edge vectors, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from atomate2_gmt.model.graph import build_graph, collate
from tests.model.conftest import prototypes


def test_fcc_ties_at_kth_shell_are_all_kept():
    # fcc: 12 nearest + 6 second neighbours; k = 16 falls in the second shell → all 18 kept
    g = build_graph(prototypes()["fcc_Cu"], k=16)
    assert len(g.edge_src) == 18
    lengths = np.sort(np.linalg.norm(g.edge_vec, axis=1))
    a = 3.61
    assert np.allclose(lengths[:12], a / np.sqrt(2), atol=1e-6)
    assert np.allclose(lengths[12:], a, atol=1e-6)


def test_edge_vectors_point_from_atom_to_neighbour_image():
    s = prototypes()["wurtzite_ZnO"]
    g = build_graph(s, k=16)
    for src, dst, vec in zip(g.edge_src[:50], g.edge_dst[:50], g.edge_vec[:50], strict=True):
        image = s.cart_coords[dst] + vec  # must be a periodic image of atom src
        frac = s.lattice.get_fractional_coords(image) - s.frac_coords[src]
        assert np.allclose(frac, np.round(frac), atol=1e-8)
    counts = np.bincount(g.edge_dst, minlength=len(s))
    assert counts.min() >= 16


def test_single_atom_cell_has_edges_to_its_own_images():
    g = build_graph(prototypes()["bcc_Fe"], k=16)
    assert set(g.edge_src) == {0}
    assert len(g.edge_src) >= 16


def test_batching_offsets_node_indices():
    protos = prototypes()
    graphs = [build_graph(protos[n]) for n in ("wurtzite_ZnO", "bcc_Fe", "rocksalt_NaCl")]
    batch = collate(graphs)
    assert batch.n_graphs == 3
    assert batch.node_graph.tolist() == [0] * 4 + [1] + [2] * 2
    assert batch.edge_src[len(graphs[0].edge_src)].item() == 4  # first edge of graph 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), "molecule"),
        (lambda: Structure(Lattice.cubic(3), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]), "disordered"),
        (lambda: Structure(Lattice.cubic(3), ["Fe"], [[np.nan, 0, 0]]), "NaN"),
        (lambda: Structure(Lattice.cubic(60.0), ["Fe"], [[0, 0, 0]]), "vacuum gap wider than"),
        (lambda: Structure(Lattice.cubic(5), ["Og"], [[0, 0, 0]]), "unknown element"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        build_graph(make())
