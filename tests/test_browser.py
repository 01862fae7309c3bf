"""The HTML report in a real browser: Debian's headless Chromium driven by Selenium through the
system chromedriver (no browser is downloaded). Opens a report with a finding from disk, reads the
finding (its rule, its smallest example's input values, expected against got, its cases beneath),
uses the filters (and checks that the verdict badges and the regime table follow them), sorts a
column, expands a case, and saves a screenshot (under pytest's tmp dir and in
``build/test-artifacts/report-browser.png``).

Skipped, with the reason, where Chromium, chromedriver or selenium is missing, unless
``NNCONFORM_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails instead: CI must run it.
``NNCONFORM_CHROMIUM`` / ``NNCONFORM_CHROMEDRIVER`` point at other binaries.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.report_runs import cli, report_run

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    chromium = _find("NNCONFORM_CHROMIUM", "chromium", "chromium-browser")
    driver_path = _find("NNCONFORM_CHROMEDRIVER", "chromedriver")
    missing = [what for what, path in (("chromium", chromium), ("chromedriver", driver_path)) if not path]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("NNCONFORM_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; NNCONFORM_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,2300", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A copy of the run with the buggy vendor adapter (two backends; ReLU's gradient at 0 wrong on
    vendor: one finding, four shrunk examples), rendered against the clean run as its baseline."""
    root = tmp_path_factory.mktemp("runs")
    clean, _, _ = report_run("clean", root)
    bad, _, _ = report_run("bad", root)
    directory = tmp_path_factory.mktemp("browser") / "report"
    shutil.copytree(bad, directory)
    code, out, _ = cli("report", str(directory), "--baseline", str(clean))
    assert code == 1, out
    return directory / "report.html"


def _visible(driver, css: str) -> list:
    return [e for e in driver.find_elements("css selector", css) if e.is_displayed()]


def _badges(driver) -> dict[str, int]:
    out = {}
    for badge in driver.find_elements("css selector", "#badges .badge"):
        count, verdict = badge.text.split()
        out[verdict] = int(count)
    return out


def test_report_in_chromium(browser, report, tmp_path):
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(report.as_uri())
    assert driver.execute_script("return document.documentElement.getAttribute('data-ready')") == "1"
    banner = driver.find_element("id", "banner").text
    assert banner.startswith("1 finding (probable bugs) from 4 failing cases; 4 shrunk examples"), banner
    assert "2 new, 0 fixed, 0 unchanged" in driver.find_element("id", "regressions").text
    results = "#results tbody tr"
    assert len(_visible(driver, results)) == 8  # 2 layers × 2 backends × 2 dtypes
    assert len(_visible(driver, "details.discrepancy[open]")) == 0  # collapsed until asked

    # The finding leads: what, how many, where (the learned rule), the smallest example's values.
    (finding,) = _visible(driver, "section.finding")
    text = finding.text
    assert "F1 ReLU on vendor: wrong values in grad.input where" in text and "'at the kink'" in text
    assert "4 failing cases in float32 (2), bfloat16 (2); 4 shrunk examples." in text
    assert "exact on the" in text or "covers 4 of 4" in text or "covers" in text
    values = [row.text for row in finding.find_elements("css selector", ".smallest table.values tr")]
    assert values[0].startswith("Values of") and any(row.startswith("input ") and row.endswith(" 0")
                                                     for row in values), values
    assert any(row.startswith("output (cotangent)") for row in values), values
    expected = finding.find_element("css selector", "table.expected").text.split("\n")[-1].split()
    assert expected[0] == "grad.input" and expected[2] == "0.0" and float(expected[3]) != 0.0, expected
    command = finding.find_element("css selector", "code.repro-command").text
    assert command.startswith(f"python {report.parent}/repro/ReLU-vendor-"), command
    # its cases sit underneath: one per shrunk example, each header telling them apart
    headers = [s.text for s in finding.find_elements("css selector", "details.discrepancy > summary")]
    assert len(headers) == 4 and len(set(headers)) == 4, headers
    assert sum("regime at the kink" in h for h in headers) == 2 and sum("random search" in h for h in headers) == 2

    # Filters change the badges: all cases, then bfloat16 only, then torch-cpu only.
    everything = _badges(driver)
    assert everything["fail"] == 4 and everything["pass"] > 100
    Select(driver.find_element("id", "filter-dtype")).select_by_value("bfloat16")
    half = _badges(driver)
    assert half["fail"] == 2 and 0 < half["pass"] < everything["pass"], half
    assert len(_visible(driver, "section.finding")) == 1
    # the regime table keeps only the bfloat16 columns
    shown = {c.get_attribute("data-dtype") for c in _visible(driver, "#regimes thead th.rcol")}
    assert shown == {"bfloat16"}, shown
    Select(driver.find_element("id", "filter-backend")).select_by_value("torch-cpu")
    assert _badges(driver)["fail"] == 0 and not _visible(driver, "section.finding")
    assert {c.get_attribute("data-backend") for c in _visible(driver, "#regimes thead th.rcol")} == {"torch-cpu"}
    driver.find_element("id", "filter-reset").click()
    assert _badges(driver) == everything

    # Filter: discrepancies only, then bfloat16 only, then a text search.
    Select(driver.find_element("id", "filter-verdict")).select_by_value("discrepancy")
    rows = _visible(driver, results)
    assert len(rows) == 2 and all("s-fail" in r.get_attribute("class") for r in rows)
    assert len(_visible(driver, "#colour-map g.mrow")) == 1  # only ReLU's row is left on the map
    Select(driver.find_element("id", "filter-dtype")).select_by_value("bfloat16")
    assert [r.text.split()[:4] for r in _visible(driver, results)] == [["ReLU", "activation", "vendor", "bfloat16"]]
    search = driver.find_element("id", "filter-text")
    search.send_keys("grad.input")
    shown = _visible(driver, "details.discrepancy")
    assert len(shown) == 2 and all("ReLU · vendor · bfloat16" in s.text for s in shown)
    assert driver.find_element("id", "filter-status").text == "showing 1 of 8 cells, 2 of 4 discrepancies"

    # Expand a case: its input values, the worst elements, their error-against-bound plot, the repro.
    shown[0].find_element("css selector", "summary").click()
    assert shown[0].get_attribute("open") is not None
    body = shown[0].text
    assert "Values of" in body and "Worst elements of grad.input" in body and "1 of 1 elements out of bound" in body
    assert "--backend module:Class" in body
    plot = shown[0].find_element("css selector", "svg.errplot")
    assert plot.is_displayed() and plot.size["width"] > 300
    worst = shown[0].find_element("css selector", "table.worst").text.split()
    # ref 0 at the kink; got the output gradient itself (ReLU'(0) = 1), so |error| = |got| and bound 0
    reference, got, error, bound = worst[-4:]
    assert reference == "0.0" and float(got) != 0.0 and worst[-1] == "0"
    assert abs(float(error) - abs(float(got))) <= 1e-2 * abs(float(got)), worst
    assert len(_visible(driver, "svg.spark")) == 1
    tmp_png = tmp_path / "report-browser.png"
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(tmp_png)) and tmp_png.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_png, ARTIFACTS / "report-browser.png")

    # Reset, then sort the results by case count, both ways.
    driver.find_element("id", "filter-reset").click()
    assert len(_visible(driver, results)) == 8 and not search.get_attribute("value")
    header = next(th for th in driver.find_elements("css selector", "#results thead th") if th.text.startswith("Cases"))
    header.click()
    counts = [int(r.find_elements("css selector", "td")[4].text) for r in _visible(driver, results)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    header.click()
    counts = [int(r.find_elements("css selector", "td")[4].text) for r in _visible(driver, results)]
    assert counts == sorted(counts, reverse=True)

    # Side by side: only the rows where torch-cpu and vendor differ (ReLU in both dtypes).
    driver.find_element("id", "differs-only").click()
    assert [r.text.split()[:2] for r in _visible(driver, "#comparison tbody tr")] == \
        [["ReLU", "float32"], ["ReLU", "bfloat16"]]

    # A link from the colour map opens its discrepancy.
    driver.execute_script("document.querySelectorAll('details.discrepancy').forEach(d => d.open = false)")
    link = driver.find_element("css selector", "#colour-map a[href^='#discrepancy-']")
    target = link.get_dom_attribute("href").rsplit("#", 1)[1]
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", link)
    opened = _visible(driver, "details.discrepancy[open]")
    assert [d.get_attribute("id") for d in opened] == [target]
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
