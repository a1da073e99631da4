"""The server's web page in a real browser (Debian's headless Chromium driven by Selenium): upload an
image, wait for the drawing, read the box list from the page, compare it with ``POST /predict``,
move the threshold slider, pick a sample, and keep a screenshot."""
import os
import shutil
import urllib.request

import pytest

from ppdet_lite.deploy.client import predict

from .helpers import json_rows, start_server, stop_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    webdriver = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(webdriver is None or not CHROMIUM or not CHROMEDRIVER,
                       reason="no browser: needs Debian's chromium + chromium-driver and selenium "
                              "(apt-get install chromium chromium-driver; .ci/run installs them)"),
]


@pytest.fixture(scope="module")
def page_server(ours_tiny, image_files, tmp_path_factory):
    samples = tmp_path_factory.mktemp("samples")
    shutil.copy(image_files[1], samples / "sample.jpg")
    proc, url, _ = start_server(ours_tiny.dir, "--workers", "1", "--threshold", "0.2", "--samples_dir", str(samples))
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def page_boxes(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, "#boxes tr.box")
    return [{"class_id": int(r.get_attribute("data-class-id")), "score": float(r.get_attribute("data-score")),
             "bbox": [float(v) for v in r.get_attribute("data-bbox").strip("[]").split(",")]} for r in rows]


def wait_ready(driver, timeout=60):
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, "status").text in ("ready", "failed"))
    assert driver.find_element(By.ID, "status").text == "ready", driver.find_element(By.ID, "error").text


def same_as_server(url, image, threshold, boxes):
    status, body = predict(url, open(image, "rb").read(), threshold=threshold)
    assert status == 200
    expected = sorted(json_rows(body).tolist())
    got = sorted([b["class_id"], b["score"], *b["bbox"]] for b in boxes)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[0] == e[0] and abs(g[1] - e[1]) < 1e-4 and max(abs(a - b) for a, b in zip(g[2:], e[2:])) < 1e-2


def set_slider(driver, value):
    driver.execute_script("const s = document.getElementById('threshold'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'));", str(value))


def test_upload_draw_filter_and_samples(page_server, browser, image_files, tmp_path):
    browser.get(page_server + "/")
    WebDriverWait(browser, 30).until(lambda d: "classes" in d.find_element(By.ID, "meta").text)
    meta = browser.find_element(By.ID, "meta").text
    assert "YOLO" in meta and "192" in meta and "80 classes" in meta
    assert browser.find_element(By.ID, "threshold").get_attribute("value") == "0.2"  # the server's default

    browser.find_element(By.ID, "file").send_keys(os.path.abspath(image_files[0]))
    wait_ready(browser)
    boxes = page_boxes(browser)
    assert boxes, "no boxes drawn at the default threshold"
    same_as_server(page_server, image_files[0], 0.2, boxes)
    assert "inference" in browser.find_element(By.ID, "latency").text
    # the boxes are on the canvas: pixels differ from the bare image along the first box's edge
    changed = browser.execute_script("""
        const c = document.getElementById('view'), ctx = c.getContext('2d');
        const bare = document.createElement('canvas'); bare.width = c.width; bare.height = c.height;
        const img = new Image(); img.src = c.toDataURL();
        const b = JSON.parse(document.querySelector('#boxes tr.box').dataset.bbox).map(Math.round);
        const row = ctx.getImageData(b[0], Math.max(b[1], 0), Math.max(b[2] - b[0], 1), 1).data;
        let colored = 0;
        for (let i = 0; i < row.length; i += 4) if (row[i] + row[i + 1] + row[i + 2] > 0) colored++;
        return [c.width, c.height, colored];""")
    assert changed[:2] == [320, 240] and changed[2] > 0

    set_slider(browser, 0.45)
    fewer = page_boxes(browser)
    assert len(fewer) < len(boxes)
    same_as_server(page_server, image_files[0], 0.45, fewer)
    set_slider(browser, 0.0)
    assert len(page_boxes(browser)) > len(boxes)

    Select(browser.find_element(By.ID, "samples")).select_by_value("sample.jpg")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(
        "return document.getElementById('view').width") == 300)
    wait_ready(browser)
    set_slider(browser, 0.2)
    same_as_server(page_server, image_files[1], 0.2, page_boxes(browser))

    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_page_works_offline(page_server):
    with urllib.request.urlopen(page_server + "/", timeout=30) as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
        html = resp.read().decode()
    assert "http://" not in html and "https://" not in html  # no CDN, no external font
