"""Candidate structures for screening: files, stores, Python lists, and a substitution generator.

Every source gives a list of :class:`Candidate`: a name (``source``), the structure (or None with
the ``error`` that made it unusable), provenance and, when the source has one, an energy above
the hull (eV/atom). A bad input never raises: it becomes a failed candidate with its reason.

:func:`generate_substitution_candidates` makes realistic new crystals offline: it takes small,
common, charge-balanced prototypes from the Materials Project data shipped with the package,
replaces each ion by ions of the same charge that are known to substitute for it (the data-mined
substitution table of Hautier et al., *Inorg. Chem.* 50, 656 (2011), shipped with pymatgen),
rescales the volume by the ratio of ionic volumes (Shannon radii), and drops compositions that are
already in the shipped data with the same space group.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from monty.json import MSONable
from pymatgen.core import Composition, Element, Species, Structure

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from maggma.core import Store

__all__ = [
    "DEFAULT_EXCLUDED_ELEMENTS",
    "Candidate",
    "CandidateLike",
    "InputLimits",
    "as_candidates",
    "candidates_from_files",
    "candidates_from_folder",
    "candidates_from_store",
    "candidates_from_structures",
    "check_structure",
    "generate_substitution_candidates",
    "known_formula_space_groups",
    "load_candidates",
    "substitution_prototypes",
]

DEFAULT_EXCLUDED_ELEMENTS: tuple[str, ...] = (
    "H", "He", "Ne", "Ar", "Kr", "Xe", "Rn",  # hydrogen (not an ionic substituent), noble gases
    "Tc", "Pm", "Po", "At", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu",  # radioactive
    "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
)  # fmt: skip
"""Elements the substitution generator never introduces (or keeps in a prototype)."""

_DATASETS = ("mp_legacy_piezo.json.gz", "mp_legacy_dielectric.json.gz", "mp_legacy_elastic.json.gz")


@dataclass
class Candidate(MSONable):
    """One structure to screen (or the reason it cannot be screened); MSONable, so lists of
    candidates travel as jobflow job inputs.

    ``source`` names it (file name, store id, generated label); ``provenance`` says where it came
    from; ``e_above_hull`` (eV/atom) is kept when the source provides it (it is not predicted).
    """

    source: str
    structure: Structure | None = None
    error: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    e_above_hull: float | None = None

    @property
    def state(self) -> Literal["successful", "failed"]:
        """``"successful"`` when a usable structure is present, else ``"failed"``."""
        return "successful" if self.structure is not None and self.error is None else "failed"


@dataclass(frozen=True)
class InputLimits:
    """What a structure file or structure may be (settings ``MAX_SITES``, ``MAX_FILE_MB``).

    A file must be a regular file (not a FIFO or device, which would block or never end), at
    most ``max_file_bytes`` once decompressed, and have at most ``2 * max_sites + 1000`` lines
    (a site is one line of a CIF, POSCAR or XYZ file), checked before parsing: pymatgen's
    parse time grows about quadratically with the sites (2k sites 2.6 s, 8k sites 21 s).
    """

    max_sites: int = 2000
    max_file_bytes: int = 5_000_000

    @classmethod
    def from_settings(cls, settings: Any = None) -> InputLimits:
        """The limits of ``settings`` (default: the settings in force)."""
        if settings is None:
            from atomate2_gmt.settings import GMTSettings

            settings = GMTSettings()
        return cls(int(settings.MAX_SITES), int(settings.MAX_FILE_MB * 1e6))

    @property
    def max_lines(self) -> int:
        """Most lines a text structure file may have."""
        return 2 * self.max_sites + 1000


def check_structure(structure: Any, max_sites: int | None = None) -> str | None:
    """The reason ``structure`` cannot be screened, or None if it can (the model's check,
    :func:`atomate2_gmt.model.graph.structure_problem`: sites, order, species, lattice, minimum
    distance, vacuum). ``max_sites``: None → the settings' ``MAX_SITES``."""
    from atomate2_gmt.model.graph import structure_problem

    if max_sites is None:
        max_sites = InputLimits.from_settings().max_sites
    return structure_problem(structure, max_sites=max_sites)


_COMPRESSED = (".gz", ".bz2", ".xz", ".lzma", ".z")
_CIF_BLOCK = re.compile(r"^[ \t]*data_(\S*)", re.IGNORECASE | re.MULTILINE)


def _bounded_text(path: Path, limits: InputLimits) -> tuple[str | None, str | None]:
    """(text, None) of a structure file within ``limits``, or (None, the reason it is
    refused) — checked before any parser sees the file."""
    import stat

    from monty.io import zopen

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return None, f"cannot read the file ({type(exc).__name__}: {exc.strerror or exc})"
    if not stat.S_ISREG(mode):
        return None, "not a regular file (a FIFO, device or socket is never read)"
    mb = limits.max_file_bytes / 1e6
    if path.stat().st_size > limits.max_file_bytes:
        return None, (
            f"file of {path.stat().st_size / 1e6:.1f} MB is larger than the {mb:g} MB limit "
            "(setting MAX_FILE_MB)"
        )
    try:
        opener = zopen if path.suffix.lower() in _COMPRESSED else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            data = fh.read(limits.max_file_bytes + 1)
    except Exception as exc:
        return None, f"cannot read the file ({type(exc).__name__}: {exc})"
    if len(data) > limits.max_file_bytes:
        return None, f"decompressed file is larger than the {mb:g} MB limit (setting MAX_FILE_MB)"
    text = data.decode("utf-8", errors="replace")
    if "\x00" in text:
        return None, "binary file (contains NUL bytes), not a structure file"
    n_sites = text.count('"species"') if ".json" in path.name.lower() else text.count("\n")
    limit = limits.max_sites if ".json" in path.name.lower() else limits.max_lines
    if n_sites > limit:
        what = "sites" if ".json" in path.name.lower() else "lines"
        return None, (
            f"file has {n_sites} {what}, more than a structure of at most {limits.max_sites} "
            f"sites needs (setting MAX_SITES); refused before parsing"
        )
    return text, None


def _read_one(path: Path, name: str, limits: InputLimits | None = None) -> list[Candidate]:
    """The candidates of one file: one, or one per structure block of a multi-block CIF."""
    limits = limits or InputLimits.from_settings()
    provenance: dict[str, Any] = {"file": str(path.resolve())}
    text, refused = _bounded_text(path, limits)
    if text is None:
        return [Candidate(source=name, error=refused, provenance=provenance)]
    if ".cif" in path.name.lower():
        blocks = _cif_structure_blocks(text)
        if len(blocks) > 1:
            return [
                _parse(
                    lambda b=block: _cif_block_structure(b),
                    f"{name}#{label}",
                    {**provenance, "cif_block": label},
                    limits,
                )
                for label, block in blocks
            ]
    return [_parse(lambda: Structure.from_file(str(path)), name, provenance, limits)]


def _cif_structure_blocks(text: str) -> list[tuple[str, str]]:
    """(block name, block text) of each data block of a CIF that has atom sites."""
    found = list(_CIF_BLOCK.finditer(text))
    starts = [m.start() for m in found]
    names = [m.group(1) or str(i) for i, m in enumerate(found)]
    ends = [*starts[1:], len(text)] if starts else []
    return [
        (label, text[a:b])
        for label, a, b in zip(names, starts, ends, strict=True)
        if "_atom_site_fract_" in text[a:b] or "_atom_site_cartn_" in text[a:b].lower()
    ]


def _cif_block_structure(block: str) -> Structure:
    from pymatgen.io.cif import CifParser

    return CifParser.from_str(block).parse_structures(primitive=False, on_error="raise")[0]


def _parse(read: Any, name: str, provenance: dict[str, Any], limits: InputLimits) -> Candidate:
    """A candidate from ``read()`` (a Structure), failed with the reason if reading or
    :func:`check_structure` fails."""
    provenance = dict(provenance)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structure = read()
        if caught:
            provenance["warnings"] = sorted({str(w.message)[:200] for w in caught})
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return Candidate(
            source=name,
            error=f"unreadable structure file ({type(exc).__name__}: {message})",
            provenance=provenance,
        )
    reason = check_structure(structure, max_sites=limits.max_sites)
    if reason is not None:
        return Candidate(source=name, error=reason, provenance=provenance)
    return Candidate(source=name, structure=structure, provenance=provenance)


def candidates_from_files(paths: Iterable[str | os.PathLike[str]]) -> list[Candidate]:
    """One candidate per file (CIF, POSCAR, pymatgen JSON, ... — anything
    ``Structure.from_file`` reads); unreadable files become failed candidates."""
    limits = InputLimits.from_settings()
    out = []
    for p in paths:
        path = Path(p)
        out.extend(_read_one(path, path.name, limits))
    return out


def candidates_from_folder(
    folder: str | os.PathLike[str], pattern: str = "*", recursive: bool = False
) -> list[Candidate]:
    """Candidates from the files in ``folder`` matching ``pattern`` (hidden files skipped).

    Sources are the paths relative to ``folder``, in sorted order.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"candidate folder {str(root)!r} does not exist or is not a folder")
    files = root.rglob(pattern) if recursive else root.glob(pattern)
    paths = sorted(
        p
        for p in files
        if not p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    limits = InputLimits.from_settings()
    return [c for p in paths for c in _read_one(p, str(p.relative_to(root)), limits)]


def _structure_candidate(item: Any, name: str, max_sites: int) -> Candidate:
    """The candidate of one Structure or ``Structure.as_dict()`` dict named ``name``: failed
    with the reason when the dict is no Structure or :func:`check_structure` refuses it."""
    structure: Any = item
    if isinstance(item, dict):
        try:
            structure = Structure.from_dict(item)
        except Exception as exc:
            return Candidate(source=name, error=f"not a Structure dict ({type(exc).__name__})")
    reason = check_structure(structure, max_sites)
    if reason:
        return Candidate(source=name, error=reason)
    return Candidate(source=name, structure=structure)


def candidates_from_structures(
    structures: Sequence[Structure | dict[str, Any]], names: Sequence[str] | None = None
) -> list[Candidate]:
    """Candidates from Structures or ``Structure.as_dict()`` dicts; names default to
    ``structure-<i>``."""
    if names is not None and len(names) != len(structures):
        raise ValueError(f"got {len(names)} names for {len(structures)} structures")
    max_sites = InputLimits.from_settings().max_sites
    return [
        _structure_candidate(item, names[i] if names is not None else f"structure-{i}", max_sites)
        for i, item in enumerate(structures)
    ]


_HULL_FIELDS = ("e_above_hull", "energy_above_hull", "thermo.energy_above_hull")


def candidates_from_store(
    store: Store,
    criteria: dict[str, Any] | None = None,
    structure_field: str = "structure",
    limit: int = 0,
) -> list[Candidate]:
    """Candidates from the documents of a maggma store (connected here if needed).

    The source of each is ``<store key value>`` (e.g. an MP id); an energy above the hull is
    taken from ``e_above_hull`` / ``energy_above_hull`` when a document has one.
    """
    from pydash import get

    from atomate2_gmt.data.criteria import check_criteria

    criteria = check_criteria(criteria or {})
    store.connect()
    max_sites = InputLimits.from_settings().max_sites
    out = []
    for i, doc in enumerate(store.query(criteria=criteria, limit=limit)):
        key = get(doc, store.key) if isinstance(store.key, str) else None
        name = str(key) if key is not None else f"document-{i}"
        provenance = {"store": store.__class__.__name__, "key": store.key, "id": key}
        hull = next((get(doc, f) for f in _HULL_FIELDS if get(doc, f) is not None), None)
        raw = get(doc, structure_field)
        if raw is None:
            out.append(
                Candidate(
                    source=name,
                    error=f"document has no {structure_field!r} field",
                    provenance=provenance,
                )
            )
            continue
        try:
            structure = raw if isinstance(raw, Structure) else Structure.from_dict(raw)
        except Exception as exc:
            out.append(
                Candidate(
                    source=name,
                    error=f"field {structure_field!r} is not a Structure ({type(exc).__name__})",
                    provenance=provenance,
                )
            )
            continue
        reason = check_structure(structure, max_sites)
        out.append(
            Candidate(
                source=name,
                structure=None if reason else structure,
                error=reason,
                provenance=provenance,
                e_above_hull=float(hull) if hull is not None else None,
            )
        )
    return out


CandidateLike = Candidate | Any  # Candidate, Structure, Structure dict, or a file path


@overload
def as_candidates(
    source: Any, first_index: int = 0, read_files: Literal[True] = True
) -> list[Candidate]: ...


@overload
def as_candidates(source: Any, first_index: int = 0, *, read_files: bool) -> list[Any]: ...


def as_candidates(source: Any, first_index: int = 0, read_files: bool = True) -> list[Any]:
    """The one normalisation of candidate inputs (the CLI, the screening flow and the
    prediction job all call it).

    ``source`` is a maggma store (its candidates), a folder (its files, hidden ones and folders
    left out, sorted), a file, or a list of items. Items of a list: candidates pass through,
    Structures (or their dicts) become candidates named ``structure-<i>`` (``i`` the place in
    the list, counted from ``first_index``), strings and paths are structure files, anything
    else a failed candidate with the reason. ``read_files``: files are read here (unreadable
    ones become failed candidates with the reason); False → folders and files give their paths
    and list items other than structures pass through as they are, so the prediction jobs read
    them on the worker. Raises a ``ValueError`` for any other ``source`` or a missing path.
    """
    from maggma.core import Store

    if isinstance(source, Store):
        return candidates_from_store(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            if read_files:
                return candidates_from_folder(path)
            # every entry but folders and hidden files: a FIFO or device fails alone, with a reason
            return sorted(
                str(p) for p in path.iterdir() if not p.is_dir() and not p.name.startswith(".")
            )
        if path.is_file():
            return candidates_from_files([path]) if read_files else [str(path)]
        raise ValueError(f"candidate source {str(path)!r} is neither a folder nor a file")
    if not isinstance(source, list | tuple):
        raise ValueError(
            "candidate source must be a folder/file path, a maggma Store or a list of "
            f"structures, got {type(source).__name__}"
        )
    max_sites: int | None = None
    out: list[Any] = []
    for i, item in enumerate(source, start=first_index):
        if isinstance(item, Structure | dict):
            if max_sites is None:
                max_sites = InputLimits.from_settings().max_sites
            out.append(_structure_candidate(item, f"structure-{i}", max_sites))
        elif not read_files or isinstance(item, Candidate):
            out.append(item)
        elif isinstance(item, str | os.PathLike):
            out.extend(candidates_from_files([item]))
        else:
            out.append(
                Candidate(
                    source=f"input-{i}",
                    error=f"cannot screen a {type(item).__name__}: give a Structure, a file "
                    "path or a Candidate",
                )
            )
    return out


def load_candidates(source: Any) -> list[Candidate]:
    """Candidates from a folder or file path, a maggma store, or a list of structures/dicts
    (:func:`as_candidates`, files read)."""
    return as_candidates(source)


# --------------------------------------------------------------------------------------------
# the substitution generator
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _shipped_records() -> tuple[dict[str, Any], ...]:
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
        for r in _shipped_records()
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
    for rec in _shipped_records():
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

    For each prototype (see :func:`substitution_prototypes`) every ion may be replaced by a
    same-charge ion with substitution log-weight λ ≥ ``min_lambda`` (top ``max_per_site`` per
    ion); combinations are drawn at random with weight exp(Σ λ - λ_self) (Gumbel top-k, seeded),
    taken round-robin over prototypes for variety. The volume is scaled by Σ r³(new) / Σ r³(old)
    with Shannon ionic radii. Candidates whose (reduced formula, space group) is in the shipped
    data, or repeats an earlier candidate, are skipped; the result is charge-balanced by
    construction and checked with ``Composition.oxi_state_guesses``. Deterministic for a seed.
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
            "generator": "atomate2_gmt.candidates.generate_substitution_candidates",
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
