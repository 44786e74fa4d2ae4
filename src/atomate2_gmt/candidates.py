"""Candidate structures for screening: files, stores and Python lists.

Every source gives a list of :class:`Candidate`: a name (``source``), the structure (or None with
the ``error`` that made it unusable), provenance and, when the source has one, an energy above
the hull (eV/atom). A bad input never raises: it becomes a failed candidate with its reason.
Collections of many records (MP-style summary lists and JSON lines, entries, OPTIMADE responses,
extended XYZ) are read as streams by :mod:`atomate2_gmt.sources`; each record becomes one
candidate here (:func:`record_candidate`).

The substitution generator of new crystals is :mod:`atomate2_gmt.substitution`.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from monty.json import MSONable
from pymatgen.core import Structure

from atomate2_gmt.sources import (
    SourceRecord,
    SourceSlice,
    detect_collection,
    plain_structure_dict,
    record_id,
    record_structure,
    source_properties_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from maggma.core import Store

__all__ = [
    "DEFAULT_EXCLUDED_ELEMENTS",
    "Candidate",
    "CandidateLike",
    "InputLimits",
    "as_candidates",
    "candidates_from_collection",
    "candidates_from_files",
    "candidates_from_folder",
    "candidates_from_store",
    "candidates_from_structures",
    "check_structure",
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
    from; ``source_properties`` holds what the source knows of the crystal, validated by
    :class:`~atomate2_gmt.schemas.prediction.SourceProperties` (emmet's names: ``material_id``,
    ``energy_above_hull``, ``formation_energy_per_atom``, ``band_gap``, ``is_metal``); what the
    source does not give is absent, never invented.
    """

    source: str
    structure: Structure | None = None
    error: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    source_properties: dict[str, Any] = field(default_factory=dict)

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
            from atomate2_gmt.settings import resolve_settings

            settings = resolve_settings()
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
    if stat.S_ISDIR(mode):
        return (
            None,
            "a folder named like a structure file: folders inside a screened folder are not read",
        )
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


def _is_poscar(name: str) -> bool:
    """Whether pymatgen's ``Structure.from_file`` reads ``name`` as a VASP POSCAR."""
    import fnmatch

    low = name.lower()
    return any(fnmatch.fnmatch(low, p) for p in ("*poscar*", "*contcar*", "*.vasp"))


def poscar_count_problem(text: str) -> str | None:
    """Why the atom counts of a POSCAR do not match its coordinate lines, or None.

    pymatgen reads as many coordinate lines as the counts line sums to and ignores the rest, so a
    counts line that covers 2 of 4 sites silently gives a 2-site crystal. The coordinate block
    (after ``Direct``/``Cartesian``) runs to the first blank line (VASP writes velocities after
    one); its lines must number exactly the sum of the counts.
    """
    lines = text.splitlines()
    try:
        i = 5
        if not all(_is_number(t) for t in lines[i].split()):
            i += 1  # VASP 5: a line of element symbols before the counts
        counts = [int(t) for t in lines[i].split()]
    except (IndexError, ValueError):
        return None  # not this check's business: the parser says what is wrong
    i += 1
    if i < len(lines) and lines[i].strip()[:1].lower() == "s":  # Selective dynamics
        i += 1
    i += 1  # Direct / Cartesian
    coords = 0
    for line in lines[i:]:
        if not line.strip():
            break
        coords += 1
    if coords != sum(counts):
        return (
            f"POSCAR counts line sums to {sum(counts)} sites but {coords} coordinate lines "
            "follow: the counts and the coordinates disagree (a truncated or mis-edited file)"
        )
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_one(path: Path, name: str, limits: InputLimits | None = None) -> list[Candidate]:
    """The candidates of one file: one, or one per structure block of a multi-block CIF. Every
    step (resolving the path, reading, parsing, checking) fails this file alone."""
    limits = limits or InputLimits.from_settings()
    kind = detect_collection(path)
    if kind is not None:  # many records: each its own candidate (files of any size)
        return list(candidates_from_collection(path, kind, limits.max_sites))
    try:
        provenance: dict[str, Any] = {"file": str(path.resolve(strict=False))}
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before Python 3.13
        return [
            Candidate(
                source=name,
                error=f"cannot resolve the path ({type(exc).__name__}: {exc}): a symlink loop?",
                provenance={"file": str(path.absolute())},
            )
        ]
    text, refused = _bounded_text(path, limits)
    if text is None:
        return [Candidate(source=name, error=refused, provenance=provenance)]
    if _is_poscar(path.name):
        mismatch = poscar_count_problem(text)
        if mismatch is not None:
            return [Candidate(source=name, error=mismatch, provenance=provenance)]
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
    if ".json" in path.name.lower():  # read as plain JSON: no class named in it is imported
        return [_parse(lambda: _json_structure(text), name, provenance, limits)]
    return [_parse(lambda: Structure.from_file(str(path)), name, provenance, limits)]


def _json_structure(text: str) -> Structure:
    """A ``Structure.as_dict()`` JSON file's structure. pymatgen's ``Structure.from_file`` would
    decode it with monty's decoder, which imports whatever ``@module`` the file names."""
    import json

    return Structure.from_dict(plain_structure_dict(json.loads(text)))


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


def candidates_from_files(
    paths: Iterable[str | os.PathLike[str]], limits: InputLimits | None = None
) -> list[Candidate]:
    """One candidate per structure file (CIF, POSCAR, pymatgen JSON, ... — anything
    ``Structure.from_file`` reads), one per record of a collection file
    (:mod:`atomate2_gmt.sources`); unreadable files become failed candidates. ``limits``:
    None → the settings' (:meth:`InputLimits.from_settings`)."""
    limits = limits or InputLimits.from_settings()
    out = []
    for p in paths:
        path = Path(p)
        out.extend(_read_one(path, path.name, limits))
    return out


def candidates_from_folder(
    folder: str | os.PathLike[str],
    pattern: str = "*",
    recursive: bool = False,
    limits: InputLimits | None = None,
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
        if _listed(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    limits = limits or InputLimits.from_settings()
    return [c for p in paths for c in _read_one(p, str(p.relative_to(root)), limits)]


_STRUCTURE_SUFFIXES = (".cif", ".mcif", ".json", ".vasp", ".xyz", ".cssr", *_COMPRESSED)


def _listed(path: Path) -> bool:
    """Whether an entry of a screened folder becomes a candidate: every entry but folders, and
    a folder too when it is named like a structure file (``x.cif``, ``POSCAR``), so that it is
    listed as failed with the reason instead of vanishing."""
    try:
        if not path.is_dir():
            return True
    except OSError:
        return True  # cannot even tell: read it, and fail it alone with the reason
    low = path.name.lower()
    return low.endswith(_STRUCTURE_SUFFIXES) or _is_poscar(low)


def _structure_candidate(item: Any, name: str, max_sites: int) -> Candidate:
    """The candidate of one Structure or ``Structure.as_dict()`` dict named ``name``: failed
    with the reason when the dict is no Structure or :func:`check_structure` refuses it."""
    structure: Any = item
    if isinstance(item, dict):
        try:
            structure = Structure.from_dict(plain_structure_dict(item))
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


def record_candidate(rec: SourceRecord, max_sites: int | None = None) -> Candidate:
    """The candidate of one record of a collection (:mod:`atomate2_gmt.sources`): named by the
    source's id (``material_id``, entry or OPTIMADE id), else ``<file>#<index>``; failed with
    the reason (naming the file and the record's index) when the record holds no usable
    structure."""
    if max_sites is None:
        max_sites = InputLimits.from_settings().max_sites
    file = Path(rec.file).name
    provenance: dict[str, Any] = {"file": rec.file, "record": rec.index}
    name = f"{file}#{rec.index}"
    if rec.error is None:
        try:  # anything wrong with one record fails that record alone
            structure, props = record_structure(rec, max_sites)
        except Exception as exc:
            rec.error = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    if rec.error is not None:
        name = record_id(rec) or name
        return Candidate(
            source=name, error=f"record {rec.index} of {file}: {rec.error}", provenance=provenance
        )
    name = str(props.get("material_id") or name)
    reason = check_structure(structure, max_sites)
    if reason is not None:
        return Candidate(
            source=name,
            error=f"record {rec.index} of {file}: {reason}",
            provenance=provenance,
            source_properties=props,
        )
    return Candidate(
        source=name, structure=structure, provenance=provenance, source_properties=props
    )


def candidates_from_collection(
    path: str | os.PathLike[str], kind: str | None = None, max_sites: int | None = None
) -> Iterator[Candidate]:
    """The candidates of a collection file (MP-style summary list or JSON lines, entries,
    OPTIMADE response, extended XYZ; see :mod:`atomate2_gmt.sources`), one at a time."""
    kind = kind or detect_collection(path)
    if kind is None:
        raise ValueError(f"{str(path)!r} is not a collection of records")
    if max_sites is None:
        max_sites = InputLimits.from_settings().max_sites
    for rec in SourceSlice(str(path), kind).records():
        yield record_candidate(rec, max_sites)


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
        try:
            props = source_properties_of(doc, material_id=name if key is not None else None)
        except ValueError as exc:
            out.append(Candidate(source=name, error=str(exc), provenance=provenance))
            continue
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
            structure = (
                raw
                if isinstance(raw, Structure)
                else Structure.from_dict(plain_structure_dict(raw))
            )
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
                source_properties=props,
            )
        )
    return out


CandidateLike = Candidate | Any  # Candidate, Structure, Structure dict, or a file path


@overload
def as_candidates(
    source: Any,
    first_index: int = 0,
    read_files: Literal[True] = True,
    limits: InputLimits | None = None,
) -> list[Candidate]: ...


@overload
def as_candidates(
    source: Any, first_index: int = 0, *, read_files: bool, limits: InputLimits | None = None
) -> list[Any]: ...


def as_candidates(
    source: Any,
    first_index: int = 0,
    read_files: bool = True,
    limits: InputLimits | None = None,
) -> list[Any]:
    """The one normalisation of candidate inputs (the CLI, the screening flow and the
    prediction job all call it).

    ``source`` is a maggma store (its candidates), a folder (its files, hidden ones and folders
    left out, sorted), a file, or a list of items. Items of a list: candidates pass through,
    Structures (or their dicts) become candidates named ``structure-<i>`` (``i`` the place in
    the list, counted from ``first_index``), strings and paths are structure files (or
    collection files of many records), a :class:`~atomate2_gmt.sources.SourceSlice` gives the
    candidates of its records and a :class:`~atomate2_gmt.sources.SourceRecord` its one
    candidate, anything else a failed candidate with the reason. ``read_files``: files are
    read here (unreadable ones become failed candidates with the reason); False → folders and
    files give their paths (a collection: its ``SourceSlice``) and list items other than
    structures pass through as they are, so the prediction jobs read them on the worker.
    ``limits``: what a structure or file may be (None → the settings',
    :meth:`InputLimits.from_settings`, read once per call).
    Raises a ``ValueError`` for any other ``source`` or a missing path.
    """
    from maggma.core import Store

    if isinstance(source, Store):
        return candidates_from_store(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            if read_files:
                return candidates_from_folder(path, limits=limits)
            # every entry but folders and hidden files: a FIFO or device fails alone, with a reason
            return [
                _file_input(p)
                for p in sorted(
                    str(p) for p in path.iterdir() if _listed(p) and not p.name.startswith(".")
                )
            ]
        if path.is_file():
            if read_files:
                return candidates_from_files([path], limits)
            return [_file_input(str(path))]
        raise ValueError(f"candidate source {str(path)!r} is neither a folder nor a file")
    if not isinstance(source, list | tuple):
        raise ValueError(
            "candidate source must be a folder/file path, a maggma Store or a list of "
            f"structures, got {type(source).__name__}"
        )
    if limits is None and any(
        isinstance(item, SourceRecord | SourceSlice | Structure | dict)
        or (read_files and isinstance(item, str | os.PathLike))
        for item in source
    ):
        limits = InputLimits.from_settings()
    max_sites = limits.max_sites if limits is not None else None
    out: list[Any] = []
    for i, item in enumerate(source, start=first_index):
        if isinstance(item, SourceRecord):
            out.append(record_candidate(item, max_sites))
        elif isinstance(item, SourceSlice):
            if read_files:
                out.extend(record_candidate(r, max_sites) for r in item.records())
            else:
                out.append(item)
        elif isinstance(item, Structure | dict):
            assert max_sites is not None
            out.append(_structure_candidate(item, f"structure-{i}", max_sites))
        elif not read_files and isinstance(item, str | os.PathLike):
            out.append(item if detect_collection(item) is None else _file_input(str(item)))
        elif not read_files or isinstance(item, Candidate):
            out.append(item)
        elif isinstance(item, str | os.PathLike):
            out.extend(candidates_from_files([item], limits))
        else:
            out.append(
                Candidate(
                    source=f"input-{i}",
                    error=f"cannot screen a {type(item).__name__}: give a Structure, a file "
                    "path or a Candidate",
                )
            )
    return out


def _file_input(path: str) -> str | SourceSlice:
    """What a prediction job takes for one file: its path, or a :class:`SourceSlice` of the
    whole file when it is a collection of records."""
    kind = detect_collection(path)
    return path if kind is None else SourceSlice(str(Path(path).resolve()), kind)
