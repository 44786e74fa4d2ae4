"""mrgddb (merge DDB files) and anaddb (tensors from the DDB) as plain subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

from atomate2_gmt.dfpt.abinit.settings import Perturbations

__all__ = ["anaddb_input", "merge_ddbs", "run_anaddb"]

MERGED_DDB = "merged_DDB"
ANADDB_OUTPUT = "anaddb.abo"


def merge_ddbs(directory: str | Path, ddbs: list[str], mrgddb_cmd: str = "mrgddb") -> Path:
    """Merge ``ddbs`` (file names in ``directory``) into ``merged_DDB`` with mrgddb."""
    d = Path(directory)
    stdin = f"{MERGED_DDB}\nmerged by atomate2-gmt\n{len(ddbs)}\n" + "\n".join(ddbs) + "\n"
    with open(d / "mrgddb.log", "w") as log:
        subprocess.run(
            [mrgddb_cmd], input=stdin, text=True, cwd=d, stdout=log, stderr=log, check=True
        )
    if not (d / MERGED_DDB).exists():
        raise RuntimeError(f"mrgddb wrote no {MERGED_DDB} in {d}")
    return d / MERGED_DDB


def anaddb_input(perturbations: Perturbations) -> str:
    """anaddb variables for what the DDB holds: dielectric (``dieflag`` 1 with phonons, 2
    without), elastic (``elaflag 3``: clamped and relaxed ion, with ``instrflag 1``), piezo
    (``piezoflag 3``); acoustic sum rule and charge neutrality imposed (``asr 1``, ``chneut 1``).
    """
    lines = ["ifcflag 0", "chneut 1", "asr 1"]
    if perturbations.efield:
        if perturbations.phonon:
            lines += ["dieflag 1", "nph2l 1", "qph2l 0 0 0 0"]
        else:
            lines.append("dieflag 2")
    if perturbations.strain:
        lines += ["elaflag 3", "instrflag 1"]
        if perturbations.efield:
            lines.append("piezoflag 3")
    lines += [f'ddb_filepath "{MERGED_DDB}"', f'output_file "{ANADDB_OUTPUT}"']
    return "\n".join(lines) + "\n"


def run_anaddb(
    directory: str | Path, perturbations: Perturbations, anaddb_cmd: str = "anaddb"
) -> Path:
    """Write ``anaddb.abi`` and run anaddb on ``merged_DDB``; return the output path."""
    d = Path(directory)
    (d / "anaddb.abi").write_text(anaddb_input(perturbations))
    with open(d / "anaddb.log", "w") as log:
        subprocess.run([anaddb_cmd, "anaddb.abi"], cwd=d, stdout=log, stderr=log, check=True)
    out = d / ANADDB_OUTPUT
    if "completed succes" not in out.read_text(errors="replace"):
        raise RuntimeError(f"anaddb did not complete, see {d / 'anaddb.log'}")
    return out
