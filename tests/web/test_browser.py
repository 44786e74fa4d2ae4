"""The web app in a real browser: ``atomate2-gmt serve`` (a subprocess) over the session project,
driven by headless Chromium. Opens the table, sorts and filters it, opens a candidate and checks
that the 3-D structure and the tensor pictures rendered.

Skipped, with the reason, where Debian's ``chromium``/``chromium-driver`` are absent (``.ci/run``
installs them). With ``ATOMATE2_GMT_SCREENSHOTS=<folder>`` the table and a candidate page are
saved there (docs/figures/web/ holds the ones the docs show).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.web.browser import browser_missing, chromium, serve

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))


@pytest.fixture(scope="module")
def server(web_project: dict[str, Any]) -> Any:
    with serve(web_project["dir"], env=web_project["env"]) as info:
        yield info


@pytest.fixture(scope="module")
def driver() -> Any:
    with chromium() as d:
        yield d


def _wait(driver: Any, condition: Any, timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _keys(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        tr.get_attribute("data-key")
        for tr in driver.find_elements(By.CSS_SELECTOR, "#candidates tbody tr[data-key]")
    ]


def _column(driver: Any, field: str) -> list[float]:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, f'#candidates tbody td[data-field="{field}"]')
    return [float(c.get_attribute("data-value")) for c in cells]


def _screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("ATOMATE2_GMT_SCREENSHOTS")
    if folder:  # the whole page: the window made as tall as the document for the shot
        Path(folder).mkdir(parents=True, exist_ok=True)
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(int(height) + 20, 4000))
        time.sleep(0.5)
        driver.save_screenshot(str(Path(folder) / name))
        driver.set_window_size(size["width"], size["height"])


def test_serve_starts_fast_and_binds_loopback(server):
    assert server["startup_s"] < 30.0  # "a few seconds" here; see docs/benchmarks.md
    assert server["url"].startswith("http://127.0.0.1:")
    assert "serving sqlite://" in server["output"]


def test_table_sort_filter_and_candidate(server, driver, web_project):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    docs = web_project["docs"]
    driver.get(server["url"] + "/")
    _wait(driver, ec.presence_of_element_located((By.ID, "candidates")))
    assert "Candidates" in driver.title
    insulators = [d for d in docs if not d.get("likely_metal")]
    ranked = sorted(
        insulators, key=lambda d: (d["dielectric_eig_max"], d["prediction_id"]), reverse=True
    )
    assert _keys(driver) == [d["prediction_id"] for d in ranked]
    _screenshot(driver, "table.png")

    # sort: click the column header, then again for ascending
    driver.find_element(By.ID, "sort-dielectric_mean").click()
    _wait(driver, ec.url_contains("sort=dielectric_mean"))
    values = _column(driver, "dielectric_mean")
    assert len(values) == len(insulators)
    assert values == sorted(values, reverse=True)
    driver.find_element(By.ID, "sort-dielectric_mean").click()
    _wait(driver, ec.url_contains("ascending=true"))
    values = _column(driver, "dielectric_mean")
    assert values == sorted(values)

    # filter: switch to piezo, cubic crystals only, then keep those without Na
    Select(driver.find_element(By.ID, "f-property")).select_by_value("piezo")
    Select(driver.find_element(By.ID, "f-crystal-system")).select_by_value("cubic")
    driver.find_element(By.ID, "f-apply").click()
    _wait(driver, ec.url_contains("crystal_system=cubic"))
    cubic = [d for d in insulators if d["symmetry"]["crystal_system"] == "Cubic"]
    assert sorted(_keys(driver)) == sorted(d["prediction_id"] for d in cubic)
    assert len(_column(driver, "e_ij_max")) == len(cubic)
    box = driver.find_element(By.ID, "f-exclude")
    box.clear()
    box.send_keys("Na")
    driver.find_element(By.ID, "f-apply").click()
    _wait(driver, ec.url_contains("exclude_elements=Na"))
    assert sorted(_keys(driver)) == sorted(
        d["prediction_id"] for d in cubic if "Na" not in d["elements"]
    )
    assert web_project["nacl_id"] not in _keys(driver)

    # open a candidate: NaCl, which has a DFPT result
    driver.get(server["url"] + "/?dfpt=accepted")
    driver.find_element(By.CSS_SELECTOR, "a.cand").click()
    _wait(driver, ec.presence_of_element_located((By.ID, "viewer")))
    state = _wait(
        driver,
        lambda d: d.execute_script(
            "return window.gmtViewer && (window.gmtViewer.ready || window.gmtViewer.error)"
            " ? window.gmtViewer : null"
        ),
    )
    assert state["error"] is None, state
    assert state["ready"]
    assert state["atoms"] == state["sites"] >= 8
    canvas = driver.find_element(By.CSS_SELECTOR, "#viewer canvas")
    assert canvas.size["width"] > 200
    assert canvas.size["height"] > 200
    # the canvas shows a picture, not a blank background
    import matplotlib.image as mpimg

    time.sleep(0.5)
    pixels = mpimg.imread(io.BytesIO(canvas.screenshot_as_png), format="png")[..., :3]
    assert float(np.std(pixels)) > 0.05
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20

    # the tensor pictures loaded
    images = _wait(
        driver,
        lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('figure.surface img')];"
            "return imgs.length && imgs.every(i => i.complete) ?"
            " imgs.map(i => [i.id, i.naturalWidth]) : null"
        ),
        timeout=60,
    )
    assert sorted(i for i, _ in images) == [
        "picture-dielectric",
        "picture-elastic",
        "picture-piezo",
    ]
    assert all(width > 100 for _, width in images), images
    assert driver.find_element(By.ID, "dfpt-state").text == "accepted"
    assert driver.find_element(By.ID, "voigt-piezo").is_displayed()
    _screenshot(driver, "candidate.png")


def test_parity_page(server, driver):
    from selenium.webdriver.common.by import By

    driver.get(server["url"] + "/parity")
    points = driver.find_elements(By.CSS_SELECTOR, "#parity-dielectric circle.pt")
    assert len(points) == 9
    assert points[0].size["width"] > 0
