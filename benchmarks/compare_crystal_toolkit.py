"""crystal-toolkit's structure component (Dash) against the app's server-rendered candidate page.

crystal-toolkit is installed in a separate, throwaway virtual environment (it is not a
dependency), e.g.::

    python3 -m venv /tmp/ctk-venv && /tmp/ctk-venv/bin/pip install crystal-toolkit
    python benchmarks/compare_crystal_toolkit.py --ctk-python /tmp/ctk-venv/bin/python

Both show the same crystal (NaCl, rock salt, a = 5.69 Å; predicted here with the shipped models
for the app): a minimal Dash app with one ``StructureMoleculeComponent``, and
``atomate2-gmt serve`` with the full candidate page (structure viewer, three tensor pictures,
Voigt matrices, symmetry, provenance). Measured:

- install size: the files of the distributions each needs beyond what atomate2-gmt already
  installs (crystal-toolkit's extras; the ``web`` extra: fastapi, uvicorn, starlette and their
  dependencies) plus, for the app, its vendored browser code;
- start-up: command start to the first HTTP answer (the Dash app imports crystal-toolkit, the
  app imports maggma.api/FastAPI);
- page: headless Chromium (the browser tests' settings), navigation start to a rendered 3-D
  structure (a WebGL canvas for crystal-toolkit; the viewer's ready flag for the app), median of
  ``--repeat`` loads after one warm-up, with the bytes transferred and the requests to hosts
  other than the server (what breaks offline).

Prints a table and writes benchmarks/results/compare_crystal_toolkit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "compare_crystal_toolkit.json"
sys.path.insert(0, str(ROOT))

SIZES = textwrap.dedent(
    """
    import json, sys
    from importlib import metadata
    out = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        size = 0
        for f in dist.files or []:
            try:
                size += f.locate().stat().st_size
            except OSError:
                pass
        out[name] = size
    json.dump(out, sys.stdout)
    """
)

CTK_APP = textwrap.dedent(
    """
    import sys
    import dash
    from dash import html
    import crystal_toolkit.components as ctc
    from crystal_toolkit.core.plugin import CrystalToolkitPlugin
    from flask_caching import Cache
    from pymatgen.core import Structure

    structure = Structure.from_file(sys.argv[1])
    component = ctc.StructureMoleculeComponent(structure, id="structure")
    layout = html.Div([component.layout()])
    # the plugin's default cache type ("simple") is gone from Flask-Caching 2
    cache = Cache(config={"CACHE_TYPE": "SimpleCache"})
    app = dash.Dash(__name__, plugins=[CrystalToolkitPlugin(layout=layout, cache=cache)])
    app.run(host="127.0.0.1", port=int(sys.argv[2]), debug=False)
    """
)


def dist_sizes(python: str) -> dict[str, int]:
    out = subprocess.run([python, "-c", SIZES], capture_output=True, text=True, check=True)
    return {k: int(v) for k, v in json.loads(out.stdout).items()}


def wait_http(url: str, proc: subprocess.Popen[bytes], start: float, timeout: float) -> float:
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def page_times(driver: Any, url: str, ready_js: str, repeat: int) -> dict[str, Any]:
    """Navigation start → ``ready_js`` true (polled every 20 ms), bytes, foreign requests."""
    from selenium.webdriver.support.ui import WebDriverWait

    times = []
    info: dict[str, Any] = {}
    for i in range(repeat + 1):
        driver.get("about:blank")
        t = time.perf_counter()
        driver.get(url)
        WebDriverWait(driver, 120, poll_frequency=0.02).until(lambda d: d.execute_script(ready_js))
        elapsed = (time.perf_counter() - t) * 1000
        if i == 0:  # warm-up: record what the first (uncached) load fetched
            info = driver.execute_script(
                "const e = performance.getEntriesByType('resource');"
                "const n = performance.getEntriesByType('navigation')[0];"
                "return {bytes: e.reduce((s, r) => s + (r.transferSize || 0), n.transferSize),"
                " requests: e.length + 1,"
                " foreign: e.map(r => r.name).filter(u => !u.startsWith(location.origin))};"
            )
            info["first_ms"] = round(elapsed, 1)
        else:
            times.append(elapsed)
    return {**info, "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def make_project(folder: Path) -> tuple[str, Path]:
    """A project with NaCl predicted by the shipped models; (prediction_id, CIF file)."""
    from pymatgen.core import Lattice, Structure

    from atomate2_gmt.jobs.predict import GMTPredictMaker, predict_documents
    from atomate2_gmt.settings import GMTSettings
    from atomate2_gmt.stores import candidate_store, upsert_predictions

    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )
    os.environ["ATOMATE2_GMT_PROJECT_DIR"] = str(folder)
    os.environ.setdefault("ATOMATE2_GMT_DEVICE", "cpu")
    maker = GMTPredictMaker(tasks=("dielectric", "piezo", "elastic"), workers=0, model_workers=0)
    [doc] = predict_documents(maker, [nacl]).documents
    store = candidate_store(GMTSettings(PROJECT_DIR=folder))
    upsert_predictions(store, [doc])
    store.close()
    cif = folder / "NaCl.cif"
    nacl.to(filename=str(cif))
    return str(doc["prediction_id"]), cif


def main() -> None:
    from tests.web.browser import chromium, free_port, serve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ctk-python", required=True, help="python of a crystal-toolkit venv")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    ours_env = dist_sizes(sys.executable)
    ctk_env = dist_sizes(args.ctk_python)
    ctk_version = subprocess.run(
        [args.ctk_python, "-c", "from importlib.metadata import version as v;"
         "print(v('crystal-toolkit'), v('dash'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    web_extra = ("fastapi", "uvicorn", "starlette", "anyio", "h11", "sniffio", "annotated-doc")
    static = ROOT / "src" / "atomate2_gmt" / "web" / "static"
    ours_extra = sum(ours_env.get(n, 0) for n in web_extra) + sum(
        p.stat().st_size for p in static.rglob("*") if p.is_file()
    )
    ctk_only = {n: s for n, s in ctk_env.items() if n not in ours_env}
    ctk_extra = sum(ctk_only.values())

    with tempfile.TemporaryDirectory() as tmp:
        key, cif = make_project(Path(tmp) / "project")
        script = Path(tmp) / "ctk_app.py"
        script.write_text(CTK_APP)
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [args.ctk_python, str(script), str(cif), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ctk_start = wait_http(f"http://127.0.0.1:{port}/", proc, start, 300)
            with serve(Path(tmp) / "project") as ours, chromium() as driver:
                ours_page = page_times(
                    driver,
                    f"{ours['url']}/candidate/{urllib.request.quote(key)}",
                    "return !!(window.gmtViewer && window.gmtViewer.ready)",
                    args.repeat,
                )
                ctk_page = page_times(
                    driver,
                    f"http://127.0.0.1:{port}/",
                    "const c = document.querySelector('canvas');"
                    "return !!(c && c.width > 0 && c.height > 0)",
                    args.repeat,
                )
                ours_start = ours["startup_s"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    rows = [
        {
            "app": "atomate2-gmt serve (server-rendered page, 3Dmol.js)",
            "install_mb": round(ours_extra / 1e6, 1),
            "startup_s": round(ours_start, 2),
            **ours_page,
        },
        {
            "app": f"crystal-toolkit {ctk_version[0]} (Dash {ctk_version[1]}), structure only",
            "install_mb": round(ctk_extra / 1e6, 1),
            "startup_s": round(ctk_start, 2),
            **ctk_page,
        },
    ]
    print(f"{'app':<58} {'install MB':>10} {'start s':>8} {'page ms':>8} {'first ms':>9} "
          f"{'kB':>6} {'foreign requests':>17}")  # fmt: skip
    for r in rows:
        print(f"{r['app']:<58} {r['install_mb']:>10.1f} {r['startup_s']:>8.2f} "
              f"{r['median_ms']:>8.0f} {r['first_ms']:>9.0f} {r['bytes'] / 1000:>6.0f} "
              f"{len(r['foreign']):>17}")  # fmt: skip
    largest = sorted(ctk_only.items(), key=lambda kv: -kv[1])[:10]
    print("crystal-toolkit's largest additions (MB):",
          ", ".join(f"{n} {s / 1e6:.0f}" for n, s in largest))  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "rows": rows,
                "ctk_added_distributions": len(ctk_only),
                "ctk_largest_additions_mb": {n: round(s / 1e6, 1) for n, s in largest},
                "repeat": args.repeat,
                "load": round(os.getloadavg()[0], 1),
            },
            indent=1,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
