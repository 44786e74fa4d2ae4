"""Candidate sources as streams: the files that hold many crystals, read record by record.

A *collection* file holds many records, each a crystal and what the source knows of it:

- ``json-list``: a JSON list of MP-API-style summary documents (``material_id``, ``structure``,
  ``band_gap``, ...), of pymatgen ``ComputedStructureEntry`` dicts or of ``Structure`` dicts;
- ``jsonl``: the same records, one JSON document a line (JSON lines);
- ``entries``: ``{"entries": [ComputedStructureEntry dicts]}``, as Alexandria publishes them (the
  entry's ``data`` holds ``e_above_hull``, ``e_form``, ``band_gap_ind``, ``mat_id``, ...);
- ``optimade``: an OPTIMADE ``structures`` response, ``{"data": [{"id", "type": "structures",
  "attributes": {...}}]}``;
- ``extxyz``: extended XYZ frames, read through ASE (``ase.io.iread``).

Any of them may be compressed (gzip, bz2, xz). Every reader iterates: JSON through ``ijson``
(the standard library's ``json`` loads a whole file), so memory does not grow with the file.
What the source knows is mapped onto emmet's names (:func:`source_properties_of`); what it does
not give stays absent, never invented. One malformed record becomes a :class:`SourceRecord`
with its ``error`` (naming the record's index); the other records are read as usual. Nothing is
unpickled and no class named in a file is imported: structures are built with
``Structure.from_dict`` and OPTIMADE resources with pymatgen's ``OptimadeStructureAdapter``.

A screening flow cuts a collection into :class:`SourceSlice` inputs of its chunk jobs
(:func:`split_source`): in one streaming pass the records are written, ``chunk_size`` at a
time, to gzipped JSON-lines part files (so that no job re-reads the records before its own),
and each chunk job reads its part. :mod:`atomate2_gmt.candidates` turns records into candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from monty.json import MSONable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pymatgen.core import Structure

__all__ = [
    "COLLECTION_KINDS",
    "SourceRecord",
    "SourceSlice",
    "detect_collection",
    "file_identity",
    "is_file_input",
    "iter_records",
    "n_inputs",
    "record_id",
    "record_structure",
    "source_properties_of",
    "split_source",
]

SourceKind = Literal["json-list", "jsonl", "entries", "optimade", "extxyz"]
COLLECTION_KINDS: tuple[str, ...] = ("json-list", "jsonl", "entries", "optimade", "extxyz")

_COMPRESSED = (".gz", ".bz2", ".xz", ".lzma")
_SNIFF_BYTES = 4_000_000  # the top-level keys of a JSON object are looked for in this much
_MAX_LINE_BYTES = 50_000_000  # one JSON-lines record larger than this is refused


def _plain_name(path: Path) -> str:
    """The file name without its compression suffix, lower case."""
    name = path.name.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _open(path: Path) -> Any:
    """The file's bytes, decompressed when its suffix says so."""
    from monty.io import zopen

    if path.name.lower().endswith(_COMPRESSED):
        return zopen(path, "rb")
    return open(path, "rb")  # the caller closes it


class _Capped:
    """A binary reader that stops after ``limit`` bytes (the sniffing of a file's start)."""

    def __init__(self, fh: Any, limit: int) -> None:
        self.fh, self.left = fh, limit

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        return bytes(data)


def detect_collection(path: str | os.PathLike[str]) -> SourceKind | None:
    """The kind of collection ``path`` is (:data:`COLLECTION_KINDS`), or None when it is a
    single-structure file (CIF, POSCAR, a ``Structure`` JSON, ...) or cannot be read (the
    single-file reader then says why). Decided by the name (``.jsonl``/``.ndjson``, ``.xyz``/
    ``.extxyz``) and, for JSON, by its start: a list, JSON lines, or an object whose top-level
    keys include ``entries`` (entries), ``data`` (OPTIMADE) or ``structure`` (one summary
    document, read as a one-record list)."""
    path = Path(path)
    name = _plain_name(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
    except (OSError, RuntimeError):  # missing, unreadable, a symlink loop
        return None
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if not name.endswith(".json"):
        return None
    try:
        with _open(path) as fh:
            head = fh.read(65536).lstrip()
            first = head[:1]
            if first == b"[":
                return "json-list"
            if first != b"{":
                return None
            # JSON lines: a first line that is a whole object, and another object after it
            line, sep, rest = head.partition(b"\n")
            if not sep:
                line += fh.readline(_SNIFF_BYTES)
                rest = fh.read(65536)
            if rest.lstrip()[:1] == b"{":
                try:
                    json.loads(line)
                    return "jsonl"
                except ValueError:
                    pass
        return _json_object_kind(path)
    except Exception:
        return None


def _json_object_kind(path: Path) -> SourceKind | None:
    """The collection kind of a JSON object file from its top-level keys (first
    :data:`_SNIFF_BYTES` bytes)."""
    import ijson

    with _open(path) as fh:
        try:
            for prefix, event, value in ijson.parse(_Capped(fh, _SNIFF_BYTES)):
                if prefix != "" or event != "map_key":
                    continue
                if value == "entries":
                    return "entries"
                if value == "data":
                    return "optimade"
                if value == "structure":
                    return "json-list"
                if value in ("lattice", "sites"):
                    return None
        except Exception:  # truncated by the cap, or not JSON: the single-file reader decides
            return None
    return None


@dataclass
class SourceRecord(MSONable):
    """One record of a collection: ``index`` (0-based, in the whole file), the decoded record
    (a dict; an extended-XYZ frame becomes ``{"structure": Structure dict, "info": {...}}``) or
    the ``error`` that made it unreadable, and the ``file`` it came from."""

    index: int
    record: Any = None
    error: str | None = None
    file: str = ""
    kind: str = "json-list"


@dataclass
class SourceSlice(MSONable):
    """Records ``[start, stop)`` of a collection file (``stop`` None: to its end): one chunk
    job's input. ``origin`` and ``first_index`` name the file and index the records came from
    when ``path`` is a part file that :func:`split_source` wrote; ``count`` is the number of
    records when known."""

    path: str
    kind: str
    start: int = 0
    stop: int | None = None
    origin: str | None = None
    first_index: int = 0
    count: int | None = None

    def records(self) -> Iterator[SourceRecord]:
        """The slice's records, read as a stream, indexed and named as in ``origin``."""
        if self.kind.startswith("part:"):
            records = _part_records(Path(self.path), self.kind[5:], self.origin or self.path)
        else:
            records = iter_records(self.path, self.kind)  # type: ignore[arg-type]
        for rec in islice(records, self.start, self.stop):
            rec.index += self.first_index
            rec.file = self.origin or rec.file
            yield rec


def is_file_input(item: Any) -> bool:
    """Whether ``item`` is an input read from a file: a path or a :class:`SourceSlice`."""
    return isinstance(item, SourceSlice | str | os.PathLike)


def file_identity(items: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """What identifies inputs that are files: for each a file path ``[resolved path, size,
    modification time (ns)]``, or a :class:`SourceSlice` (the same of its file, then its kind,
    bounds, origin and first index). None when an input is no file (a structure in memory),
    a file cannot be stat'ed, or there is no input. Equal identities mean the same records, as
    long as files are replaced rather than rewritten within one modification-time tick."""
    ident: list[Any] = []
    try:
        for item in items:
            if isinstance(item, SourceSlice):
                st = Path(item.path).stat()
                bounds = [item.kind, item.start, item.stop, item.origin, item.first_index]
                ident.append([str(Path(item.path).resolve()), st.st_size, st.st_mtime_ns, bounds])
            elif is_file_input(item):
                st = Path(item).stat()
                ident.append([str(Path(item).resolve()), st.st_size, st.st_mtime_ns])
            else:
                return None
    except OSError:
        return None
    return ident or None


def _part_records(path: Path, kind: str, origin: str) -> Iterator[SourceRecord]:
    """The records of a part file written by :func:`split_source`, with their original index
    (relative to the part's first record)."""
    first: int | None = None
    for line in iter_records(path, "jsonl"):
        if line.error is not None or not isinstance(line.record, dict):
            yield SourceRecord(line.index, error=line.error or "damaged part file", file=origin)
            continue
        index = int(line.record["index"])
        first = index if first is None else first
        yield SourceRecord(
            index - first, line.record.get("record"), line.record.get("error"), origin, kind
        )


def n_inputs(items: list[Any]) -> int:
    """The number of candidates ``items`` stand for (a slice counts its records; unknown → 1)."""
    return sum(
        (item.count if item.count is not None else 1) if isinstance(item, SourceSlice) else 1
        for item in items
    )


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def iter_records(path: str | os.PathLike[str], kind: SourceKind) -> Iterator[SourceRecord]:
    """The records of collection ``path`` of ``kind``, one at a time (constant memory). A record
    that cannot be decoded is yielded with its ``error``; a file whose syntax breaks part-way
    ends with one record saying where (the records before it are kept)."""
    path = Path(path)
    file = str(path)
    if kind == "extxyz":
        yield from _xyz_records(path)
        return
    try:
        fh = _open(path)
    except Exception as exc:
        yield SourceRecord(0, error=f"cannot open the file ({_message(exc)})", file=file, kind=kind)
        return
    with fh:
        if kind == "jsonl":
            yield from _jsonl_records(fh, file)
            return
        import ijson

        prefix = {"json-list": "item", "entries": "entries.item", "optimade": "data.item"}[kind]
        index = 0
        try:
            if kind == "json-list":
                first = fh.read(65536)
                if first.lstrip()[:1] == b"{":  # one summary document
                    rest = first + fh.read(_MAX_LINE_BYTES)
                    yield SourceRecord(0, json.loads(rest), file=file, kind=kind)
                    return
                fh = _Prepended(first, fh)
            for item in ijson.items(fh, prefix, use_float=True):
                yield SourceRecord(index, item, file=file, kind=kind)
                index += 1
        except Exception as exc:
            yield SourceRecord(
                index,
                error=f"the file is not valid JSON after record {index} ({_message(exc)}); "
                "the records after it are not read",
                file=file,
                kind=kind,
            )


class _Prepended:
    """A binary reader that first returns ``head`` (bytes already read), then ``fh``."""

    def __init__(self, head: bytes, fh: Any) -> None:
        self.head, self.fh = head, fh

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 else (self.head[:n], self.head[n:])
            return out
        return bytes(self.fh.read(n))

    def __enter__(self) -> _Prepended:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _jsonl_records(fh: Any, file: str) -> Iterator[SourceRecord]:
    index = 0
    while True:
        line = fh.readline(_MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > _MAX_LINE_BYTES and not line.endswith(b"\n"):
            yield SourceRecord(
                index,
                error=f"record longer than {_MAX_LINE_BYTES / 1e6:g} MB; the records after it "
                "are not read",
                file=file,
                kind="jsonl",
            )
            return
        if not line.strip():
            continue
        try:
            yield SourceRecord(index, json.loads(line), file=file, kind="jsonl")
        except ValueError as exc:
            yield SourceRecord(
                index, error=f"not valid JSON ({_message(exc)})", file=file, kind="jsonl"
            )
        index += 1


def _xyz_records(path: Path) -> Iterator[SourceRecord]:
    """Extended-XYZ frames through ASE, each as a Structure dict and its ``info``."""
    file = str(path)
    try:
        from ase.io import iread
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as exc:  # pragma: no cover - ase ships with atomate2's extras
        yield SourceRecord(0, error=f"extended XYZ needs ASE ({exc})", file=file, kind="extxyz")
        return
    index = 0
    try:
        for atoms in iread(file, index=":", format="extxyz"):
            try:
                if not all(atoms.pbc):
                    raise ValueError("the frame is not periodic in 3 dimensions (pbc)")
                structure = AseAtomsAdaptor.get_structure(atoms)
                info = {k: _plain(v) for k, v in atoms.info.items()}
                record = {"structure": structure.as_dict(), "info": info}
                yield SourceRecord(index, record, file=file, kind="extxyz")
            except Exception as exc:
                yield SourceRecord(index, error=_message(exc), file=file, kind="extxyz")
            index += 1
    except Exception as exc:
        yield SourceRecord(
            index,
            error=f"extended XYZ frame {index} cannot be read ({_message(exc)}); the frames "
            "after it are not read",
            file=file,
            kind="extxyz",
        )


def _plain(value: Any) -> Any:
    """A JSON-able form of an ASE ``info`` value."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


_SOURCE_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "material_id": ("material_id", "task_id"),
    "energy_above_hull": ("energy_above_hull", "e_above_hull", "thermo.energy_above_hull"),
    "formation_energy_per_atom": ("formation_energy_per_atom", "thermo.formation_energy_per_atom"),
    "band_gap": ("band_gap", "bandstructure.band_gap", "electronic_structure.band_gap"),
    "is_metal": ("is_metal",),
}
"""Where MP-API-style summary documents keep each of emmet's source fields (first found wins)."""

_ENTRY_DATA_PATHS: dict[str, tuple[str, ...]] = {
    "material_id": ("mat_id", "material_id"),
    "energy_above_hull": ("e_above_hull", "energy_above_hull"),
    # Alexandria's e_form is the formation energy per atom (eV/atom)
    "formation_energy_per_atom": ("formation_energy_per_atom", "e_form"),
    # the indirect gap is the fundamental one; a direct gap alone is not the band gap
    "band_gap": ("band_gap", "band_gap_ind"),
    "is_metal": ("is_metal",),
}
"""Where a ComputedStructureEntry's ``data`` (Alexandria, GNoME-style dumps) keeps them."""

_OPTIMADE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "energy_above_hull": ("energy_above_hull", "e_above_hull", "hull_distance"),
    "formation_energy_per_atom": ("formation_energy_per_atom",),
    "band_gap": ("band_gap",),
    "is_metal": ("is_metal",),
}
"""Provider-prefixed OPTIMADE attributes (``_<provider>_<suffix>``, e.g. ``_alexandria_band_gap``,
``_alexandria_hull_distance``) that carry each of emmet's fields."""


def source_properties_of(
    doc: dict[str, Any],
    material_id: str | None = None,
    paths: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """The emmet-named properties a source document gives (``SourceProperties`` fields), as a
    plain dict of the fields present; ``material_id`` is the fallback id; ``paths``: where each
    field is looked for (default: MP-API summary documents). A value of the wrong type or out of
    range (negative band gap, NaN) raises ``ValueError`` naming the field."""
    from pydantic import ValidationError
    from pydash import get

    from atomate2_gmt.schemas.prediction import SourceProperties

    found: dict[str, Any] = {}
    for name, where in (paths or _SOURCE_FIELD_PATHS).items():
        value = next((get(doc, p) for p in where if get(doc, p) is not None), None)
        if value is not None:
            found[name] = value
    if "material_id" not in found and material_id is not None:
        found["material_id"] = material_id
    if "material_id" in found:
        found["material_id"] = str(found["material_id"])
    try:
        props = SourceProperties.model_validate(found)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"source field {field_name!r}: {err['msg']}") from None
    return props.model_dump(exclude_none=True)


def _sites_of(raw: Any) -> int:
    sites = raw.get("sites") if isinstance(raw, dict) else None
    return len(sites) if isinstance(sites, list) else 0


def record_structure(rec: SourceRecord, max_sites: int) -> tuple[Structure, dict[str, Any]]:
    """(structure, emmet-named source properties) of a decoded record; ``ValueError`` with the
    reason when it holds no usable structure or a property is out of range. Record shapes:
    an OPTIMADE resource (``attributes``), a ComputedStructureEntry dict (``structure`` and
    ``data``/``energy``), an MP-style summary document (``structure``), a Structure dict."""
    from pymatgen.core import Structure

    doc = rec.record
    if not isinstance(doc, dict):
        raise ValueError(f"record is a {type(doc).__name__}, not a JSON object")
    if rec.kind == "optimade" or "attributes" in doc:
        return _optimade_structure(doc, max_sites)
    if rec.kind == "extxyz":
        props = source_properties_of(doc.get("info") or {})
        raw = doc["structure"]
    elif isinstance(doc.get("structure"), dict):
        raw = doc["structure"]
        is_entry = "data" in doc and ("energy" in doc or "entry_id" in doc)
        if is_entry:
            data = doc["data"] if isinstance(doc.get("data"), dict) else {}
            entry_id = None if doc.get("entry_id") is None else str(doc["entry_id"])
            props = source_properties_of(data, material_id=entry_id, paths=_ENTRY_DATA_PATHS)
        else:
            props = source_properties_of(doc)
    elif "lattice" in doc and "sites" in doc:
        raw, props = doc, {}
    else:
        keys = ", ".join(sorted(map(str, doc))[:8])
        raise ValueError(f"record has no 'structure' (keys: {keys})")
    if _sites_of(raw) > max_sites:
        raise ValueError(
            f"structure has {_sites_of(raw)} sites, more than the {max_sites} allowed "
            "(setting MAX_SITES)"
        )
    try:
        structure = Structure.from_dict(plain_structure_dict(raw))
    except Exception as exc:
        raise ValueError(f"'structure' is not a Structure ({_message(exc)})") from None
    return structure, props


def _holds_class_reference(value: Any) -> bool:
    """Whether a JSON value is or holds a monty class reference (``@module``)."""
    if isinstance(value, dict):
        return "@module" in value or any(_holds_class_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_class_reference(v) for v in value)
    return False


def plain_structure_dict(raw: Any) -> Any:
    """``raw`` (a ``Structure.as_dict()`` from a file) without the site and structure
    ``properties`` that name a class: pymatgen decodes properties with monty's decoder, which
    imports the ``@module`` a value names, so a file could make it import any module. Other
    properties are kept."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if _holds_class_reference(out.get("properties")):
        out["properties"] = {}
    sites = out.get("sites")
    if isinstance(sites, list):
        out["sites"] = [
            {**site, "properties": {}}
            if isinstance(site, dict) and _holds_class_reference(site.get("properties"))
            else site
            for site in sites
        ]
    return out


def record_id(rec: SourceRecord) -> str | None:
    """The source's id of a record, when it names one (``material_id``, an entry's
    ``entry_id`` or ``data.mat_id``, an OPTIMADE ``id``), read without decoding the rest: the
    name of a record that fails."""
    doc = rec.record
    if not isinstance(doc, dict):
        return None
    data: dict[str, Any] = doc["data"] if isinstance(doc.get("data"), dict) else {}
    info: dict[str, Any] = doc["info"] if isinstance(doc.get("info"), dict) else {}
    for value in (
        doc.get("material_id"),
        doc.get("entry_id"),
        data.get("mat_id"),
        info.get("material_id"),
        doc.get("id") if "attributes" in doc else None,
    ):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)[:200]
    return None


def _optimade_structure(doc: dict[str, Any], max_sites: int) -> tuple[Structure, dict[str, Any]]:
    """An OPTIMADE structures resource → (structure, properties). Species names are mapped to
    their chemical symbol first (OPTIMADE lets a species be named e.g. ``Si1``; pymatgen's
    adapter reads the names as symbols); disordered or vacancy species are refused."""
    from pymatgen.io.optimade import OptimadeStructureAdapter

    if doc.get("type", "structures") != "structures":
        raise ValueError(f"OPTIMADE resource of type {doc.get('type')!r}, not 'structures'")
    attrs = doc.get("attributes")
    if not isinstance(attrs, dict):
        raise ValueError("OPTIMADE resource has no 'attributes'")
    nsites = attrs.get("nsites")
    if not isinstance(nsites, int) or nsites > max_sites:
        raise ValueError(f"OPTIMADE 'nsites' is {nsites!r} (at most {max_sites} allowed)")
    symbols: dict[str, str] = {}
    species, at_sites = attrs.get("species") or [], attrs.get("species_at_sites") or []
    if not isinstance(species, list) or not all(isinstance(sp, dict) for sp in species):
        raise ValueError("OPTIMADE 'species' is not a list of species objects")
    if not isinstance(at_sites, list) or not all(isinstance(x, str) for x in at_sites):
        raise ValueError("OPTIMADE 'species_at_sites' is not a list of species names")
    for sp in species:
        chem = sp.get("chemical_symbols") or []
        if len(chem) != 1 or chem[0] == "vacancy" or list(sp.get("concentration") or [1]) != [1]:
            raise ValueError(f"OPTIMADE species {sp.get('name')!r} is disordered (not screened)")
        symbols[sp["name"]] = chem[0]
    sites = [symbols.get(s, s) for s in at_sites]
    attrs = {**attrs, "species_at_sites": sites, "dimension_types": attrs.get("dimension_types")}
    if attrs["dimension_types"] is None:
        attrs["dimension_types"] = [1, 1, 1]
    try:
        structure = OptimadeStructureAdapter.get_structure({"attributes": attrs})
    except Exception as exc:
        raise ValueError(f"OPTIMADE attributes are not a structure ({_message(exc)})") from None
    structure.properties = {}
    found: dict[str, Any] = {}
    for name, suffixes in _OPTIMADE_SUFFIXES.items():
        for key, value in attrs.items():
            if key.startswith("_") and value is not None and key.split("_", 2)[-1] in suffixes:
                found.setdefault(name, value)
    oid = doc.get("id")
    props = source_properties_of(
        found,
        material_id=None if oid is None else str(oid),
        paths={k: (k,) for k in _OPTIMADE_SUFFIXES},
    )
    return structure, props


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def split_source(
    slice_: SourceSlice, chunk_size: int, work_dir: str | os.PathLike[str]
) -> list[SourceSlice]:
    """``slice_`` (a whole collection file) cut into slices of ``chunk_size`` records, in one
    streaming pass. A file of at most ``chunk_size`` records is one slice of itself; a larger
    one is written, ``chunk_size`` records at a time, to gzipped JSON-lines part files in a
    folder of ``work_dir`` named by the file's path, size, time and the chunk size (written
    once: the same file and chunk size reuse the parts, e.g. when a screen is run again)."""
    import gzip

    path = Path(slice_.path).resolve()
    st = path.stat()
    tag = f"{path}|{st.st_size}|{st.st_mtime_ns}|{chunk_size}|{slice_.kind}"
    folder = Path(work_dir) / (
        _SAFE.sub("_", path.name)[:60] + "-" + hashlib.sha256(tag.encode()).hexdigest()[:16]
    )
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            parts = [SourceSlice(**d) for d in json.loads(manifest.read_text())]
            if all(Path(part.path).is_file() for part in parts):
                return parts
        except Exception:  # a damaged manifest: written again
            pass
    records = iter_records(path, slice_.kind)  # type: ignore[arg-type]
    first = list(islice(records, chunk_size + 1))
    if len(first) <= chunk_size:
        return [SourceSlice(str(path), slice_.kind, count=len(first))]
    folder.mkdir(parents=True, exist_ok=True)
    out: list[SourceSlice] = []

    def write(batch: list[SourceRecord]) -> None:
        part = folder / f"part-{len(out):06d}.jsonl.gz"
        tmp = part.with_suffix(".tmp")
        with gzip.open(tmp, "wt", compresslevel=1) as fh:
            for rec in batch:
                line = {"index": rec.index, "record": rec.record, "error": rec.error}
                fh.write(json.dumps(line) + "\n")
        tmp.replace(part)
        out.append(
            SourceSlice(
                str(part),
                f"part:{slice_.kind}",
                origin=str(path),
                first_index=batch[0].index,
                count=len(batch),
            )
        )

    write(first[:chunk_size])
    carry = first[chunk_size:]
    while batch := carry + list(islice(records, chunk_size - len(carry))):
        carry = []
        write(batch)
    manifest.write_text(json.dumps([dataclasses.asdict(s) for s in out]))
    return out
