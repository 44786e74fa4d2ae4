"""Compose the screening flow in Python and run it locally into the embedded store.

    python examples/screen_in_python.py                # 100 generated candidates
    python examples/screen_in_python.py path/to/cifs   # or a folder of structure files

The store is the embedded SQLite store in ``./gmt_project`` (settings: ATOMATE2_GMT_PROJECT_DIR).
"""

from __future__ import annotations

import sys

from jobflow import run_locally

from atomate2_gmt.flows.screen import GMTScreenMaker
from atomate2_gmt.jobs.predict import GMTPredictMaker
from atomate2_gmt.query import query_candidates
from atomate2_gmt.stores import candidate_store
from atomate2_gmt.substitution import generate_substitution_candidates

candidates = sys.argv[1] if len(sys.argv) > 1 else generate_substitution_candidates(n=100)

maker = GMTScreenMaker(
    predict_maker=GMTPredictMaker(tasks=("dielectric", "piezo"), batch_size=64),
    chunk_size=50,  # two parallel prediction jobs under jobflow-remote
    top=5,
    read_ahead=True,  # run_locally below: each chunk job reads the next one's files ahead
)
flow = maker.make(candidates)
responses = run_locally(flow, ensure_success=True)
ranking = responses[flow.jobs[-1].uuid][1].output
print(f"{ranking['n_successful']} predicted, {ranking['n_failed']} failed")
for row in ranking["ranking"]["piezo"]:
    print(
        f"{row['rank']:2d} {row['formula']:12s} {row['point_group']:6s} {row['e_ij_max']:.3f} C/m²"
    )

# the store answers other questions afterwards
store = candidate_store()
rows = query_candidates(
    store, "piezo", top=5, exclude_elements="Pb,Cd", non_centrosymmetric=True, born_stable=False
)
print("without Pb and Cd:", [r["formula"] for r in rows])
