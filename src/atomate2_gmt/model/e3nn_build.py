"""Building e3nn modules faster, with the same generated code: :func:`fast_e3nn_build`.

e3nn's ``TensorProduct`` and ``Linear`` generate their forward code at construction: a
``torch.fx`` graph, optimised by ``opt_einsum_fx.optimize_einsums_full`` (scalar fusion, einsum
fusion, opt_einsum's contraction path for each einsum, scalar fusion again). That function turns
the graph into Python source and compiles it five times (every ``GraphModule`` construction,
``graph`` assignment and ``recompile``), of which only the last is ever run; its shape
propagation does not need compiled code (an ``fx.Interpreter`` walks the graph). And each
``Gate`` samples a million normals per activation to normalise its second moment
(``e3nn.math.moment``, a fixed seed: the same number every time).

Inside :func:`fast_e3nn_build`, e3nn uses :func:`optimize_einsums_once` (the same passes on the
same graphs in the same order, one compilation at the end) and a memo of ``moment`` for the pure
torch activations. The generated code, the constants and therefore every output are identical
to e3nn's own build (``tests/model/test_e3nn_build.py`` compares the generated source of every
module of the shipped models, ``benchmarks/bench_load.py`` the predictions); the opt_einsum path
search itself is a few per cent of the build and is kept as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx
from torch.nn import functional as F

__all__ = ["fast_e3nn_build", "optimize_einsums_once"]


def optimize_einsums_once(
    model: Any,
    example_inputs: tuple[Any, ...],
    contract_kwargs: dict[str, Any] | None = None,
    tracer_class: type = fx.Tracer,
) -> Any:
    """``opt_einsum_fx.optimize_einsums_full`` with one compilation of the final graph.

    The passes, their order and their inputs are those of ``optimize_einsums_full`` (opt_einsum_fx
    0.1.4); the shape propagation runs an ``fx.Interpreter`` over the intermediate graphs with
    the original module for their constants, so no intermediate ``GraphModule`` is compiled.
    Anything but a ``GraphModule`` goes to ``optimize_einsums_full`` itself."""
    from opt_einsum_fx import optimize_einsums_full
    from opt_einsum_fx._efficient_shape_prop import EfficientShapeProp
    from opt_einsum_fx._fuse import fuse_einsums, fuse_scalars
    from opt_einsum_fx._opt_ein import optimize_einsums

    kwargs = dict(contract_kwargs or {})
    if not isinstance(model, fx.GraphModule):
        return optimize_einsums_full(model, example_inputs, kwargs, tracer_class)
    # in place: e3nn discards the module it passes once it has the optimised one, so the copy
    # optimize_einsums_full makes of its graph (a third of its time) is not needed
    graph = fuse_scalars(model.graph, in_place=True)
    graph = fuse_einsums(graph, in_place=True)
    EfficientShapeProp(model, graph=graph).run(*example_inputs)
    graph = optimize_einsums(graph, kwargs)
    EfficientShapeProp(model, graph=graph).run(*example_inputs)
    graph = fuse_scalars(graph, in_place=True)
    return fx.GraphModule(model, graph)


#: Activations whose second moment may be memoised: pure functions of their input.
_PURE_ACTIVATIONS: frozenset[Callable[..., Any]] = frozenset(
    {F.silu, torch.sigmoid, torch.tanh, F.softplus, F.gelu, torch.abs, torch.relu, F.relu}
)
_MOMENTS: dict[tuple[Any, ...], torch.Tensor] = {}


def _memo_moment(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``e3nn.math.moment`` memoised for :data:`_PURE_ACTIVATIONS` (its sample has a fixed
    seed, so the value depends on the function, the order, the dtype and the device only)."""

    def moment(f: Any, n: Any, dtype: Any = None, device: Any = None) -> torch.Tensor:
        try:
            pure = f in _PURE_ACTIVATIONS
        except TypeError:  # an unhashable callable
            pure = False
        if not pure:
            return original(f, n, dtype=dtype, device=device)
        from e3nn.util.default_type import explicit_default_types

        dtype, device = explicit_default_types(dtype, device)
        key = (f, n, dtype, str(device))
        if key not in _MOMENTS:
            _MOMENTS[key] = original(f, n, dtype=dtype, device=device)
        return _MOMENTS[key].clone()

    return moment


_LOCK = threading.Lock()
_DEPTH = 0
_SAVED: list[tuple[Any, str, Any]] = []


def _targets() -> list[tuple[Any, str, Any]]:
    """(module, attribute, replacement) of every e3nn name :func:`fast_e3nn_build` replaces;
    empty if this e3nn does not have them where expected (its own build is then used)."""
    try:
        from e3nn.math import _normalize_activation
        from e3nn.o3 import _linear
        from e3nn.o3._tensor_product import _codegen
    except ImportError:
        return []
    names = [(_codegen, "optimize_einsums_full"), (_linear, "optimize_einsums_full")]
    if not all(hasattr(m, a) for m, a in names) or not hasattr(_normalize_activation, "moment"):
        return []
    out: list[tuple[Any, str, Any]] = [(m, a, optimize_einsums_once) for m, a in names]
    out.append((_normalize_activation, "moment", _memo_moment(_normalize_activation.moment)))
    return out


@contextmanager
def fast_e3nn_build() -> Iterator[None]:
    """Within the block, e3nn modules are built with :func:`optimize_einsums_once` and the
    memoised ``moment`` (module docstring). Re-entrant and thread-safe: the replacements are
    installed by the first block to enter and removed by the last to leave; a block in another
    thread meanwhile builds with them as well, which gives it the same modules."""
    global _DEPTH
    with _LOCK:
        if _DEPTH == 0:
            for module, attr, replacement in _targets():
                _SAVED.append((module, attr, getattr(module, attr)))
                setattr(module, attr, replacement)
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                while _SAVED:
                    module, attr, original = _SAVED.pop()
                    setattr(module, attr, original)
