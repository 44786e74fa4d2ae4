"""The GMTNet paper's JARVIS-DFT benchmark (Yan et al., ICML 2024): fetch, verify, load.

The benchmark is two pickles in the public repository divelab/AIRS
(``OpenMat/GMTNet/data/jarvis_diele_piezo.pkl`` and ``jarvis_elastic.pkl``). They are not shipped
with this package; :func:`fetch_gmtnet_jarvis` downloads them and verifies their hashes before
anything else touches them. Pickles can execute code when loaded, so they are only ever read by
:class:`RestrictedUnpickler`, which refuses every global except ``collections.OrderedDict``
(the container ``jarvis-tools`` ``Atoms.to_dict()`` returns): plain lists, dicts, tuples, numbers
and strings only.

Each pickle is a list of dicts with ``JARVIS_ID``, ``atoms`` (a jarvis-tools ``Atoms.to_dict()``:
``lattice_mat`` rows are lattice vectors in Å, ``coords``, ``elements``, ``cartesian``),
``dielectric`` (3x3), ``dielectric_ionic`` (3x3), ``piezoelectric_C_m2`` (3x6, C/m²) and
``elastic_total_kbar`` (6x6, kbar). Voigt columns are in VASP order (xx,yy,zz,xy,yz,zx); they are
converted here to the standard order and to full Cartesian tensors in the structure's frame,
elastic constants from kbar to GPa (÷10). The paper's filters and split are applied by
:func:`load_gmtnet_jarvis`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from pymatgen.core import Lattice, Structure

from atomate2_gmt.data.records import (
    TASK_UNITS,
    TensorRecord,
    dielectric_symmetric_part,
    split_records,
    validate_task,
)
from atomate2_gmt.tensors.conventions import vasp_voigt_to_standard, voigt_to_full
from atomate2_gmt.tensors.symmetry import point_group_info, projector, zero_mask

__all__ = [
    "DEFAULT_URL_BASE",
    "GMTNET_JARVIS_FILES",
    "GMTNET_SPLIT_FRACTIONS",
    "GMTNET_SPLIT_SEED",
    "JARVIS_FILTERS",
    "JARVIS_SOURCE",
    "JARVIS_TASK_FILES",
    "KBAR_TO_GPA",
    "FileHashes",
    "JarvisSplits",
    "RestrictedUnpickler",
    "default_jarvis_dir",
    "fetch_gmtnet_jarvis",
    "git_blob_sha1",
    "jarvis_atoms_to_structure",
    "load_gmtnet_jarvis",
    "safe_load_pickle",
    "verify_file_bytes",
]

JARVIS_SOURCE = "gmtnet_jarvis"

DEFAULT_URL_BASE = "https://raw.githubusercontent.com/divelab/AIRS/main/OpenMat/GMTNet/data/"
"""Raw-file URL of the benchmark folder in divelab/AIRS (branch main)."""


@dataclass(frozen=True)
class FileHashes:
    """Expected hashes of a file: its git blob id (always) and sha256 (when known)."""

    git_blob: str
    sha256: str | None = None


GMTNET_JARVIS_FILES: dict[str, FileHashes] = {
    "jarvis_diele_piezo.pkl": FileHashes(
        git_blob="0dc2ab16160e2eb1f256becfceb0f5d92dcb26d7",
        sha256="2a57e081f0072b2ac7fca7769095adcded1d299d2cd971db5c93fd25eb66929d",
    ),
    "jarvis_elastic.pkl": FileHashes(git_blob="54406f2e3a41e5a74ad92324057a1de7f3299c2d"),
}
"""The two benchmark pickles and their published hashes."""

JARVIS_TASK_FILES: dict[str, str] = {
    "dielectric": "jarvis_diele_piezo.pkl",
    "piezo": "jarvis_diele_piezo.pkl",
    "elastic": "jarvis_elastic.pkl",
}
"""Benchmark file of each task (the benchmark has no ``dielectric_total`` task)."""

JARVIS_FIELDS: dict[str, str] = {
    "dielectric": "dielectric",
    "piezo": "piezoelectric_C_m2",
    "elastic": "elastic_total_kbar",
}

KBAR_TO_GPA = 0.1
"""1 kbar = 0.1 GPa."""

JARVIS_FILTERS: dict[str, dict[str, float]] = {
    "dielectric": {"max_abs": 100.0},
    "piezo": {"max_abs": 100.0},
    "elastic": {"max_abs": 1500.0, "max_forbidden": 1e-4},
}
"""The paper's filters: keep max|T| < ``max_abs`` (native units: dimensionless, C/m², GPa) and,
for elastic, every symmetry-forbidden entry below ``max_forbidden`` (GPa) in magnitude."""

GMTNET_SPLIT_SEED = 32
GMTNET_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

FORBIDDEN_SYMPREC = 0.01
"""spglib tolerance (Å) for the point group that decides which elastic entries are forbidden."""

_MAX_DOWNLOAD_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# hashes and the restricted unpickler
# ---------------------------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    """Git blob id of ``data``: sha1 of ``b"blob <len>\\0" + data`` (hex)."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def verify_file_bytes(
    data: bytes, name: str, *, sha256: str | None = None, git_blob: str | None = None
) -> None:
    """Raise ``ValueError`` unless ``data`` matches every hash given (hex, case-insensitive)."""
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256.lower():
            raise ValueError(
                f"{name}: sha256 mismatch (expected {sha256.lower()}, got {got}); refusing the file"
            )
    if git_blob is not None:
        got = git_blob_sha1(data)
        if got != git_blob.lower():
            raise ValueError(
                f"{name}: git blob hash mismatch (expected {git_blob.lower()}, got {got}); "
                "refusing the file"
            )


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers, numbers and strings.

    Any global the stream asks for — a class, a function such as ``os.system`` or
    ``builtins.eval``, or ``numpy`` array machinery — is refused with
    ``pickle.UnpicklingError`` naming it, before it is imported or called. The one exception is
    ``collections.OrderedDict`` (a plain mapping; jarvis-tools ``Atoms.to_dict()`` returns one).
    """

    ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({("collections", "OrderedDict")})

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed global or raise ``pickle.UnpicklingError`` naming the refused one."""
        if (module, name) in self.ALLOWED_GLOBALS:
            return OrderedDict
        hint = (
            " (numpy objects are not plain values; the file would need numpy to load)"
            if module.split(".")[0] == "numpy"
            else ""
        )
        raise pickle.UnpicklingError(
            f"refused global '{module}.{name}': this loader only accepts plain lists, dicts, "
            f"tuples, numbers and strings{hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (they would need application code to resolve)."""
        raise pickle.UnpicklingError(f"refused persistent id {pid!r}: plain values only")


_PLAIN_SCALARS = (str, int, float, bool, type(None), bytes)
_MAX_DEPTH = 64
MIN_VALUE_BUDGET = 1_000_000
"""The fewest values a pickle may expand to, whatever its size (see :func:`_check_plain`)."""
VALUES_PER_BYTE = 10
"""How many values (counted as a tree: a shared list counts once per reference) a pickle may
expand to per byte of file, above :data:`MIN_VALUE_BUDGET`. Without shared containers every
value costs at least one byte of pickle, so only a file built to multiply itself through shared
references (a "billion laughs" pickle) exceeds it."""


def _check_plain(value: Any, budget: int = MIN_VALUE_BUDGET) -> int:
    """Check that ``value`` holds only plain values; return its size counted as a tree.

    Each container is visited once (memo by ``id``), so the work is linear in the number of
    distinct objects, and the tree size (every reference to a shared container counted again:
    what a consumer iterating the data would visit) is summed from the memo. ``ValueError`` for
    a non-plain value, a reference cycle, nesting deeper than 64 levels, or a tree larger than
    ``budget`` values.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def visit(node: Any, depth: int) -> int:
        if isinstance(node, _PLAIN_SCALARS):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("pickle holds a reference cycle (a container inside itself)")
        if depth > _MAX_DEPTH:
            raise ValueError(f"pickle nests deeper than {_MAX_DEPTH} levels; refusing it")
        if isinstance(node, dict):
            children: Any = (c for pair in node.items() for c in pair)
        elif isinstance(node, list | tuple | set | frozenset):
            children = node
        else:
            raise ValueError(f"pickle holds a {type(node).__name__}, not a plain value")
        active.add(key)
        total = 1
        for child in children:
            total += visit(child, depth + 1)
            if total > budget:
                raise ValueError(
                    f"pickle expands to more than {budget:,} values through shared references "
                    "(a 'billion laughs' file); refusing it"
                )
        active.discard(key)
        sizes[key] = total
        return total

    return visit(value, 0)


def safe_load_pickle(
    path: str | os.PathLike[str], sha256: str | None = None, git_blob: str | None = None
) -> Any:
    """Read ``path``, check the given hashes, then unpickle with :class:`RestrictedUnpickler`.

    A hash mismatch raises ``ValueError`` before a single byte is unpickled. Without hashes the
    file is still only read by the restricted unpickler. Raises ``pickle.UnpicklingError`` for a
    refused global, ``ValueError`` for a value that is not plain data or a file that expands
    beyond :data:`VALUES_PER_BYTE` values per byte through shared references.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    data = path.read_bytes()
    verify_file_bytes(data, path.name, sha256=sha256, git_blob=git_blob)
    value = RestrictedUnpickler(io.BytesIO(data)).load()
    _check_plain(value, budget=max(MIN_VALUE_BUDGET, VALUES_PER_BYTE * len(data)))
    return value


# ---------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------


def default_jarvis_dir() -> Path:
    """Where ``fetch`` puts the pickles: ``$ATOMATE2_GMT_DATA_DIR/gmtnet_jarvis`` or
    ``~/.cache/atomate2-gmt/gmtnet_jarvis``."""
    root = os.environ.get("ATOMATE2_GMT_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "atomate2-gmt"
    return base / "gmtnet_jarvis"


def _read_limited(handle: IO[bytes], url: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = handle.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ValueError(f"{url}: download exceeds {max_bytes} bytes; refusing it")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_gmtnet_jarvis(
    dest_dir: str | os.PathLike[str] | None = None,
    url_base: str = DEFAULT_URL_BASE,
    *,
    files: Mapping[str, FileHashes] | None = None,
    opener: Callable[..., Any] | None = None,
    timeout: float = 120.0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Download the benchmark pickles into ``dest_dir`` and verify them; never unpickles.

    Args:
        dest_dir: target folder (created); default :func:`default_jarvis_dir`.
        url_base: folder URL, the file name is appended (``file://`` works too).
        files: name → expected hashes; default :data:`GMTNET_JARVIS_FILES`.
        opener: ``urlopen``-like callable ``(url, timeout=...)`` returning a readable response;
            default ``urllib.request.urlopen``.
        timeout: seconds per request.
        overwrite: download again even when a verified copy is present.

    Returns:
        name → path of each verified file. A file that fails its git-blob or sha256 check raises
        ``ValueError`` and is not written (a previous verified copy is left untouched).
    """
    dest = Path(dest_dir) if dest_dir is not None else default_jarvis_dir()
    expected = dict(GMTNET_JARVIS_FILES if files is None else files)
    if not expected:
        raise ValueError("no files to fetch")
    urlopen = opener if opener is not None else urllib.request.urlopen
    base = url_base if url_base.endswith("/") else url_base + "/"
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, hashes in expected.items():
        target = dest / name
        if target.is_file() and not overwrite:
            try:
                verify_file_bytes(
                    target.read_bytes(), name, sha256=hashes.sha256, git_blob=hashes.git_blob
                )
            except ValueError:
                pass  # stale or corrupt copy: download again
            else:
                out[name] = target
                continue
        url = base + name
        with urlopen(url, timeout=timeout) as response:
            data = _read_limited(response, url, _MAX_DOWNLOAD_BYTES)
        verify_file_bytes(
            data, f"{name} from {url}", sha256=hashes.sha256, git_blob=hashes.git_blob
        )
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        out[name] = target
    return out


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------


def jarvis_atoms_to_structure(atoms: Mapping[str, Any]) -> Structure:
    """pymatgen ``Structure`` from a jarvis-tools ``Atoms.to_dict()`` mapping.

    ``lattice_mat`` rows are the lattice vectors (Å); ``coords`` are Cartesian (Å) when
    ``cartesian`` is true, else fractional. The Cartesian frame is kept as is.
    """
    if not isinstance(atoms, Mapping):
        raise ValueError(f"JARVIS atoms must be a dict, got {type(atoms).__name__}")
    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in atoms]
    if missing:
        raise ValueError(f"JARVIS atoms dict lacks the keys {missing}")
    lattice = np.asarray(atoms["lattice_mat"], dtype=np.float64)
    if lattice.shape != (3, 3):
        raise ValueError(f"JARVIS lattice_mat must be 3x3, got shape {lattice.shape}")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError("JARVIS lattice_mat is singular")
    coords = np.asarray(atoms["coords"], dtype=np.float64)
    elements = [str(e).strip() for e in atoms["elements"]]
    if coords.ndim != 2 or coords.shape[1] != 3 or len(coords) != len(elements) or not elements:
        raise ValueError(
            f"JARVIS atoms: coords shape {coords.shape} does not match {len(elements)} elements"
        )
    cartesian = atoms.get("cartesian", False)
    if not isinstance(cartesian, bool):
        raise ValueError(f"JARVIS atoms: 'cartesian' must be a bool, got {cartesian!r}")
    return Structure(Lattice(lattice), elements, coords, coords_are_cartesian=cartesian)


@dataclass
class JarvisSplits:
    """The benchmark of one task after the paper's filters, split 80/10/10 with seed 32.

    Attributes:
        task: ``dielectric``, ``piezo`` or ``elastic``.
        train, val, test: records in shuffled order.
        n_total: entries in the file.
        excluded: JARVIS id → reason, for every entry left out (missing value or a filter).
        file: path of the file read.
    """

    task: str
    train: list[TensorRecord]
    val: list[TensorRecord]
    test: list[TensorRecord]
    n_total: int
    excluded: dict[str, str] = field(default_factory=dict)
    file: str = ""

    @property
    def n_kept(self) -> int:
        """Records that passed the filters."""
        return len(self.train) + len(self.val) + len(self.test)

    @property
    def n_excluded(self) -> int:
        """Entries left out."""
        return len(self.excluded)

    @property
    def records(self) -> list[TensorRecord]:
        """All kept records (train, then val, then test)."""
        return [*self.train, *self.val, *self.test]


class _SkipEntryError(Exception):
    """An entry without a usable value for the task (reason in the message)."""


def _matrix(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    if value is None or isinstance(value, str):
        raise _SkipEntryError(f"{what} missing ({value!r})")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _SkipEntryError(f"{what} is not numeric") from exc
    if arr.shape != shape:
        raise _SkipEntryError(f"{what} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise _SkipEntryError(f"{what} has non-finite entries")
    return arr


def _jarvis_tensor(task: str, entry: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Full Cartesian tensor in native units (dimensionless, C/m², GPa) and provenance notes."""
    fname = JARVIS_FIELDS[task]
    notes: dict[str, Any] = {}
    if task == "dielectric":
        sym, notes["antisymmetric_part_rel"] = dielectric_symmetric_part(
            _matrix(entry.get(fname), (3, 3), fname)
        )
        return sym, notes
    if task == "piezo":
        e_vasp = _matrix(entry.get(fname), (3, 6), fname)
        e_std = np.asarray(vasp_voigt_to_standard(e_vasp, "piezo"), dtype=np.float64)
        return np.asarray(voigt_to_full(e_std, "piezo"), dtype=np.float64), notes
    c_vasp = _matrix(entry.get(fname), (6, 6), fname) * KBAR_TO_GPA
    c_std = np.asarray(vasp_voigt_to_standard(c_vasp, "elastic"), dtype=np.float64)
    asym = float(np.max(np.abs(c_std - c_std.T)))
    if asym > 0:
        notes["voigt_asymmetry_GPa"] = asym
    return np.asarray(voigt_to_full(0.5 * (c_std + c_std.T), "elastic"), dtype=np.float64), notes


def _filter_reason(task: str, structure: Structure, tensor: np.ndarray) -> str | None:
    """Why the paper's filters drop this tensor, or None when it is kept."""
    limits = JARVIS_FILTERS[task]
    max_abs = float(np.max(np.abs(tensor)))
    if not max_abs < limits["max_abs"]:
        return f"max|T| = {max_abs:.6g} >= {limits['max_abs']:g} {TASK_UNITS[task]}"
    if "max_forbidden" in limits:
        ops = point_group_info(structure, symprec=FORBIDDEN_SYMPREC).ops
        mask = zero_mask(projector("elastic", ops))
        worst = float(np.max(np.abs(tensor[mask]))) if mask.any() else 0.0
        if not worst < limits["max_forbidden"]:
            return (
                f"symmetry-forbidden entry of magnitude {worst:.3g} >= "
                f"{limits['max_forbidden']:g} {TASK_UNITS[task]}"
            )
    return None


def _resolve_file(path: Path, task: str) -> Path:
    if path.is_dir():
        path = path / JARVIS_TASK_FILES[task]
    if not path.is_file():
        raise ValueError(
            f"no such file: {path} (fetch it with `atomate2-gmt data fetch gmtnet-jarvis`)"
        )
    return path


def _read_entries(file: Path, verify: bool) -> Sequence[Any]:
    """The entries of a benchmark pickle (restricted unpickler; hashes checked if ``verify``)."""
    if verify:
        if file.name not in GMTNET_JARVIS_FILES:
            raise ValueError(
                f"{file.name} is not a known benchmark file ({', '.join(GMTNET_JARVIS_FILES)}); "
                "pass verify=False to read an unverified file"
            )
        hashes = GMTNET_JARVIS_FILES[file.name]
        entries = safe_load_pickle(file, sha256=hashes.sha256, git_blob=hashes.git_blob)
    else:
        entries = safe_load_pickle(file)
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise ValueError(f"{file.name}: expected a list of entries, got {type(entries).__name__}")
    return entries


def _provenance(task: str, file_name: str, notes: dict[str, Any]) -> dict[str, Any]:
    """The provenance of one benchmark record: file, field, origin, citation and ``notes``."""
    provenance: dict[str, Any] = {
        "dataset": file_name,
        "field": JARVIS_FIELDS[task],
        "origin": "JARVIS-DFT as curated for GMTNet (divelab/AIRS, OpenMat/GMTNet/data)",
        "citation": (
            "K. Yan et al., A Space Group Symmetry Informed Network for O(3) Equivariant "
            "Crystal Tensor Prediction, ICML 2024; K. Choudhary et al., npj Comput. Mater. "
            "6, 173 (2020) (JARVIS)"
        ),
        **notes,
    }
    if task != "dielectric":
        provenance["voigt_order_in_file"] = "vasp (xx,yy,zz,xy,yz,zx)"
    if task == "elastic":
        provenance["unit_conversion"] = "kbar -> GPa (x0.1)"
    return provenance


def load_gmtnet_jarvis(
    path: str | os.PathLike[str],
    task: str,
    *,
    verify: bool = True,
    seed: int = GMTNET_SPLIT_SEED,
    fractions: tuple[float, float, float] = GMTNET_SPLIT_FRACTIONS,
) -> JarvisSplits:
    """Load one task of the GMTNet JARVIS benchmark as train/val/test records.

    Args:
        path: a benchmark pickle, or the folder holding both (the task picks the file).
        task: ``dielectric`` (field ``dielectric``, the paper's target), ``piezo``
            (``piezoelectric_C_m2``, C/m²) or ``elastic`` (``elastic_total_kbar`` → GPa).
        verify: check the file's published hashes first; the file name must then be one of
            :data:`GMTNET_JARVIS_FILES`. ``verify=False`` skips the check (the file is still read
            by the restricted unpickler only).
        seed, fractions: the split (paper: 32 and 80/10/10), applied after the filters to the
            kept entries in file order, see :func:`atomate2_gmt.data.records.split_records`.
    """
    validate_task(task)
    if task not in JARVIS_TASK_FILES:
        raise ValueError(
            f"task {task!r} is not in the GMTNet JARVIS benchmark; it has "
            f"{', '.join(JARVIS_TASK_FILES)}"
        )
    file = _resolve_file(Path(path), task)
    entries = _read_entries(file, verify)
    records: list[TensorRecord] = []
    excluded: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{file.name} entry {index}: expected a dict, got {type(entry)}")
        jid = str(entry.get("JARVIS_ID") or f"{file.name}#{index}")
        try:
            tensor, notes = _jarvis_tensor(task, entry)
        except _SkipEntryError as skip:
            excluded[jid] = str(skip)
            continue
        structure = jarvis_atoms_to_structure(entry.get("atoms", {}))
        reason = _filter_reason(task, structure, tensor)
        if reason is not None:
            excluded[jid] = reason
            continue
        provenance = _provenance(task, file.name, notes)
        records.append(
            TensorRecord(
                structure=structure,
                tensor=tensor,
                task=task,
                units=TASK_UNITS[task],
                source=JARVIS_SOURCE,
                id=jid,
                provenance=provenance,
                meta={"formula": structure.composition.reduced_formula},
            )
        )
    train, val, test = split_records(records, fractions=fractions, seed=seed)
    return JarvisSplits(
        task=task,
        train=train,
        val=val,
        test=test,
        n_total=len(entries),
        excluded=excluded,
        file=str(file),
    )
