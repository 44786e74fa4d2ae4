"""A substitution generator of realistic new candidate crystals, offline.

:func:`generate_substitution_candidates` takes small, common, charge-balanced prototypes from the
Materials Project data shipped with the package, replaces each ion by ions of the same charge that
are known to substitute for it (the data-mined substitution table of Hautier et al., *Inorg.
Chem.* 50, 656 (2011), through pymatgen's ``SubstitutionProbability``), rescales the volume by the
ratio of ionic volumes (Shannon radii), and drops compositions that are already in the shipped
data with the same space group. Every result is a :class:`~atomate2_gmt.candidates.Candidate`.

Only ions of charge |q| ≥ 2 are substituted (see ``_lambda_table``): prototypes with a ±1 ion
(Li⁺, Na⁺, K⁺, F⁻, Cl⁻: the LiNbO3 and KNbO3 families among them) are not used.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from pymatgen.core import Composition, Element, Species, Structure

from atomate2_gmt import progress
from atomate2_gmt.candidates import (
    _DATASETS,
    DEFAULT_EXCLUDED_ELEMENTS,
    Candidate,
    InputLimits,
    check_structure,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "generate_substitution_candidates",
    "known_formula_space_groups",
    "shipped_records",
    "substitution_prototypes",
]


@lru_cache(maxsize=1)
def shipped_records() -> tuple[dict[str, Any], ...]:
    """Every record of the shipped Materials Project datasets (dielectric, piezo, elastic sets;
    a material in several sets appears once per set)."""
    records: list[dict[str, Any]] = []
    base = resources.files("atomate2_gmt.data") / "datasets"
    for name in _DATASETS:
        with (base / name).open("rb") as fh, gzip.open(fh, "rt") as gz:
            records.extend(json.load(gz))
    return tuple(records)


@lru_cache(maxsize=1)
def known_formula_space_groups() -> frozenset[tuple[str, int]]:
    """(reduced formula, space-group number) of every material in the shipped MP data."""
    return frozenset(
        (Composition(r["formula"]).reduced_formula, int(r["space_group"]))
        for r in shipped_records()
    )


@lru_cache(maxsize=1)
def _lambda_table() -> dict[Species, dict[Species, float]]:
    """Hautier et al. substitution log-weights λ(s, t) of the ion pairs in pymatgen's table,
    both directions, from pymatgen's public ``SubstitutionProbability`` (its ``lambda.json``
    data; pairs the table does not list are left out).

    Ions of charge ±1 are left out: the generator substitutes ions of charge |q| ≥ 2 only, so
    its seeded candidate set (the demo's, and the numbers measured on it in
    docs/screening.md) holds oxides, chalcogenides, nitrides and the like; with ±1 ions the
    most common prototypes become alkali halides (NaF, K2SiF6, ...)."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    sp = SubstitutionProbability(alpha=-math.inf)  # alpha: λ of a pair the table lacks
    table: dict[Species, dict[Species, float]] = {}
    for a, b in itertools.product(sp.species, repeat=2):
        lam = float(sp.get_lambda(a, b))
        if math.isfinite(lam) and abs(a.oxi_state or 0) >= 2 and abs(b.oxi_state or 0) >= 2:
            table.setdefault(a, {})[b] = lam
    return table


def _species_str(el: str, oxi: int) -> str:
    return str(Species(el, oxi))


@lru_cache(maxsize=512)
def _radius(el: str, oxi: int) -> float:
    """Shannon ionic radius (Å) of el^oxi; the element's average ionic or atomic radius if the
    charge state has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = Species(el, oxi).ionic_radius
    if r is None:
        r = Element(el).average_ionic_radius or Element(el).atomic_radius
    return float(r) if r else float("nan")


@dataclass(frozen=True)
class _Prototype:
    material_id: str
    formula: str
    space_group: int
    structure: Structure
    oxidation_states: dict[str, int]
    label: tuple[str, int]


def _integer_oxidation_states(formula: str) -> dict[str, int] | None:
    guesses = Composition(formula).oxi_state_guesses(max_sites=-50)
    for guess in guesses:
        if all(float(v).is_integer() and v != 0 for v in guess.values()):
            return {el: int(v) for el, v in guess.items()}
    return None


def _mp_number(material_id: str) -> tuple[int, str]:
    tail = material_id.rsplit("-", 1)[-1]
    return (int(tail), material_id) if tail.isdigit() else (10**12, material_id)


def substitution_prototypes(
    max_sites: int = 10,
    max_prototypes: int = 24,
    exclude_elements: Iterable[str] = DEFAULT_EXCLUDED_ELEMENTS,
) -> list[_Prototype]:
    """Prototypes for substitution: the most common (anonymous formula, space group) structure
    types among the shipped MP cells with at most ``max_sites`` sites, one charge-balanced
    representative each (lowest MP id whose ions are all in the substitution table)."""
    if max_sites < 1:
        raise ValueError(f"max_sites must be at least 1, got {max_sites}")
    if max_prototypes < 1:
        raise ValueError(f"max_prototypes must be at least 1, got {max_prototypes}")
    excluded = set(exclude_elements)
    table = _lambda_table()
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    seen_ids: set[str] = set()
    for rec in shipped_records():
        if rec["material_id"] in seen_ids or len(rec["structure"]["sites"]) > max_sites:
            continue
        seen_ids.add(rec["material_id"])
        comp = Composition(rec["formula"])
        if len(comp) < 2 or any(el.symbol in excluded for el in comp):
            continue
        groups.setdefault((comp.anonymized_formula, int(rec["space_group"])), []).append(rec)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    out: list[_Prototype] = []
    for label, recs in ordered:
        for rec in sorted(recs, key=lambda r: _mp_number(r["material_id"])):
            oxi = _integer_oxidation_states(rec["formula"])
            if oxi is None or any(Species(el, q) not in table for el, q in oxi.items()):
                continue
            structure = Structure.from_dict(rec["structure"])
            if not structure.is_ordered:
                continue
            structure.remove_oxidation_states()
            out.append(
                _Prototype(
                    material_id=rec["material_id"],
                    formula=Composition(rec["formula"]).reduced_formula,
                    space_group=int(rec["space_group"]),
                    structure=structure,
                    oxidation_states=oxi,
                    label=label,
                )
            )
            break
        if len(out) >= max_prototypes:
            break
    return out


def _alternatives(
    el: str, oxi: int, excluded: set[str], max_per_site: int, min_lambda: float
) -> list[tuple[str, float]]:
    """Same-charge ions that substitute for ``el^oxi``: (element, λ - λ_self), best first."""
    table = _lambda_table()
    own = Species(el, oxi)
    self_lambda = table[own].get(own, 0.0)
    options = []
    for other, lam in table[own].items():
        if other == own or lam < min_lambda:
            continue
        if other.oxi_state != oxi or other.symbol in excluded or other.symbol == el:
            continue
        options.append((other.symbol, lam - self_lambda))
    options.sort(key=lambda t: (-t[1], t[0]))
    return options[:max_per_site]


def _space_group_number(structure: Structure, symprec: float) -> int | None:
    """International space-group number of ``structure`` at ``symprec`` (Å), None if spglib
    finds no symmetry (:class:`~atomate2_gmt.tensors.symmetry.analysis.SymmetryAnalysis`)."""
    from atomate2_gmt.tensors.symmetry.analysis import SymmetryAnalysis

    return SymmetryAnalysis(structure, symprec).space_group_number


def generate_substitution_candidates(
    n: int = 300,
    seed: int = 0,
    max_sites: int = 10,
    max_prototypes: int = 24,
    max_per_site: int = 8,
    min_lambda: float = 0.5,
    exclude_elements: Iterable[str] = DEFAULT_EXCLUDED_ELEMENTS,
    symprec: float = 0.01,
) -> list[Candidate]:
    """Up to ``n`` new, charge-balanced crystals by ion substitution on known prototypes.

    For each prototype (see :func:`substitution_prototypes`) every ion, all of charge |q| >= 2,
    may be replaced by a same-charge ion with substitution log-weight λ ≥ ``min_lambda`` (top
    ``max_per_site`` per ion); combinations are drawn at random with weight
    exp(Σ λ - λ_self) (Gumbel top-k, seeded), taken round-robin over prototypes for variety.
    The volume is scaled by Σ r³(new) / Σ r³(old) with Shannon ionic radii. Candidates whose
    (reduced formula, space group) is in the shipped data, or repeats an earlier candidate,
    are skipped; the result is charge-balanced by construction and checked with
    ``Composition.oxi_state_guesses``. Deterministic for a seed.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if max_per_site < 1:
        raise ValueError(f"max_per_site must be at least 1, got {max_per_site}")
    excluded = set(exclude_elements)
    unknown = sorted(e for e in excluded if not Element.is_valid_symbol(e))
    if unknown:
        raise ValueError(f"exclude_elements has unknown element symbols {unknown}")
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    with progress.heartbeat("reading the prototypes and the known crystals"):
        known = known_formula_space_groups()
        prototypes = substitution_prototypes(max_sites, max_prototypes, excluded)
    queues: list[list[tuple[_Prototype, dict[str, str], float]]] = []
    for proto in prototypes:
        elements = sorted(proto.oxidation_states)
        choices = []
        for el in elements:
            alts = _alternatives(el, proto.oxidation_states[el], excluded, max_per_site, min_lambda)
            choices.append([(el, 0.0), *alts])
        combos = []
        for combo in itertools.product(*choices):
            new_elements = [c[0] for c in combo]
            if new_elements == elements or len(set(new_elements)) < len(new_elements):
                continue
            mapping = {
                old: new for old, (new, _) in zip(elements, combo, strict=True) if old != new
            }
            combos.append((proto, mapping, float(sum(c[1] for c in combo))))
        if not combos:
            continue
        logw = np.array([c[2] for c in combos])
        keys = logw + rng.gumbel(size=len(combos))
        queues.append([combos[i] for i in np.argsort(-keys, kind="stable")])

    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()
    positions = [0] * len(queues)
    with (
        progress.task("generating candidates", n, unit="crystals") as bar,
        progress.heartbeat("generating candidates"),  # the first one imports pymatgen's tables
    ):
        while len(out) < n and any(p < len(q) for p, q in zip(positions, queues, strict=True)):
            for qi, queue in enumerate(queues):
                if len(out) >= n:
                    break
                while positions[qi] < len(queue):
                    proto, mapping, logw_value = queue[positions[qi]]
                    positions[qi] += 1
                    cand = _build_candidate(proto, mapping, logw_value, seed, known, seen, symprec)
                    if cand is not None:
                        out.append(cand)
                        bar.advance()
                        break
    return out


def _build_candidate(
    proto: _Prototype,
    mapping: dict[str, str],
    logw: float,
    seed: int,
    known: frozenset[tuple[str, int]],
    seen: set[tuple[str, int]],
    symprec: float,
) -> Candidate | None:
    oxi = proto.oxidation_states
    new_oxi = {mapping.get(el, el): q for el, q in oxi.items()}
    structure = proto.structure.copy()
    structure.replace_species(dict(mapping))  # type: ignore[arg-type]
    comp = structure.composition
    formula = comp.reduced_formula
    if (formula, proto.space_group) in seen or (formula, proto.space_group) in known:
        return None  # substitution keeps the prototype's space group (checked again below)
    guesses = comp.oxi_state_guesses(max_sites=-50)
    if not any(all(g.get(el) == q for el, q in new_oxi.items()) for g in guesses):
        return None
    counts = Counter({site.specie.symbol: 0 for site in proto.structure})
    for site in proto.structure:
        counts[site.specie.symbol] += 1
    old_v = sum(c * _radius(el, oxi[el]) ** 3 for el, c in counts.items())
    new_v = sum(c * _radius(mapping.get(el, el), oxi[el]) ** 3 for el, c in counts.items())
    ratio = new_v / old_v
    if not math.isfinite(ratio) or ratio <= 0:
        return None
    structure.scale_lattice(proto.structure.volume * ratio)
    sg = _space_group_number(structure, symprec)
    if sg is None or (formula, sg) in known or (formula, sg) in seen:
        return None
    if check_structure(structure, InputLimits().max_sites) is not None:
        return None
    seen.add((formula, sg))
    return Candidate(
        source=f"substitution:{proto.material_id}:{formula}",
        structure=structure,
        provenance={
            "generator": "atomate2_gmt.substitution.generate_substitution_candidates",
            "seed": seed,
            "prototype": proto.material_id,
            "prototype_formula": proto.formula,
            "prototype_space_group": proto.space_group,
            "prototype_type": f"{proto.label[0]} (space group {proto.label[1]})",
            "substitution": {
                _species_str(el, oxi[el]): _species_str(new, oxi[el]) for el, new in mapping.items()
            },
            "log_weight": round(logw, 4),
            "volume_scale": round(float(ratio), 4),
            "space_group": sg,
        },
    )
