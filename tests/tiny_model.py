"""The smallest GMTNet configuration the tests train or register (fast, not accurate)."""

TINY = {
    "node_dim": 16,
    "rbf_bins": 16,
    "n_invariant_layers": 1,
    "n_equivariant_layers": 1,
    "scalar_mul": 8,
    "vector_mul": 2,
    "out_mul": 2,
    "radial_hidden": 8,
    "k_neighbors": 4,
}
"""GMTNetConfig overrides of a tiny model."""
