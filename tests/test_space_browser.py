"""The Space in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

`python space/app.py` runs in a subprocess from the repository root with a tiny model (T = 50); one test loads a
digit in the forward tab, generates a short chain in the reverse tab, exports it as a GIF, and checks that the
pictures appear; another walks the bound in the objective tab and runs the ELBO question. Screenshots go to the
test's tmp_path, and also to $DDPM_HUB_SCREENSHOT_DIR when it is set (a folder; "1" means tests/artifacts/).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from ddpm_hub import UNET_PRESETS, DDPMHubPipeline, DDPMHubScheduler, DDPMHubUNet2DModel

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 180  # a loaded 2-core machine imports torch and gradio slowly

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space_url(tmp_path_factory):
    """`python space/app.py` from the repository root, with a tiny model; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium not found at /usr/bin/chromium: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    pytest.importorskip("gradio", reason="the Space needs gradio (pip install -e .[space])")
    folder = tmp_path_factory.mktemp("space_browser")
    torch.manual_seed(0)
    DDPMHubPipeline(
        unet=DDPMHubUNet2DModel(**UNET_PRESETS["tiny"]), scheduler=DDPMHubScheduler(num_train_timesteps=50)
    ).save_pretrained(folder / "model")
    port = free_port()
    env = {
        **os.environ,
        "DDPM_HUB_MODEL": str(folder / "model"),
        "DDPM_HUB_THREADS": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "space/app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"space/app.py exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"space/app.py did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def save_screenshot(page, tmp_path: Path, name: str, full_page: bool = True) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    wanted = os.environ.get("DDPM_HUB_SCREENSHOT_DIR", "")
    if wanted:
        folder = ROOT / "tests" / "artifacts" if wanted.lower() in ("1", "true", "yes") else Path(wanted)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
    return path


def wait_for_picture(page, elem_id: str, timeout_ms: int = 45_000) -> None:
    """Waits until the picture of component `elem_id` is loaded: a decoded image with pixels. Scrolls it into view
    first: the browser may defer loading an image below the fold."""
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()
    page.wait_for_function(
        """id => {
            const img = document.querySelector(`#${id} img`);
            return img !== null && img.complete && img.naturalWidth > 0;
        }""",
        arg=elem_id,
        timeout=timeout_ms,
    )


def test_forward_and_reverse_tabs_in_a_browser(space_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(space_url)

            # Forward tab: a digit is loaded on start; load another one by its number and see its pictures.
            expect(page.locator("#fw-closed img")).to_be_visible(timeout=30_000)
            page.locator("#fw-index input").fill("123")
            page.get_by_role("button", name="Load digit").first.click()
            expect(page.locator("#fw-caption")).to_contain_text("#123", timeout=20_000)
            expect(page.locator("#fw-stats")).to_contain_text("one jump with the closed form", timeout=20_000)
            for elem_id in ("fw-x0", "fw-steps", "fw-closed", "fw-strip", "fw-linear", "fw-cosine"):
                wait_for_picture(page, elem_id)
                expect(page.locator(f"#{elem_id} img")).to_be_visible()
            save_screenshot(page, tmp_path, "space_forward.png")

            # Reverse tab: a short chain streams, ends, and exports as a GIF.
            page.get_by_role("tab", name="② Reverse generation").click()
            steps = page.locator("#gen-steps input[type=number]")
            steps.fill("20")
            steps.press("Enter")
            page.get_by_role("button", name="▶ Generate").click()
            expect(page.locator("#gen-info")).to_contain_text("after 20 steps", timeout=60_000)
            for elem_id in ("gen-x", "gen-eps", "gen-x0"):
                wait_for_picture(page, elem_id)
                expect(page.locator(f"#{elem_id} img")).to_be_visible()
            page.get_by_role("button", name="Export the chain as a GIF").click()
            expect(page.locator("#gen-gif")).to_contain_text(
                "ddpm_digit3_seed42_ddpm-fixed_small_20steps", timeout=20_000
            )
            save_screenshot(page, tmp_path, "space_reverse.png")
            assert not page_errors, page_errors
        finally:
            browser.close()


# ---------------------------------------------------------------------------------------------------------------------
# Layouts: a phone (400 px wide) and a small laptop (1366 x 768)
# ---------------------------------------------------------------------------------------------------------------------

TABS = {  # screenshot name -> the tab buttons to click, in order
    "forward": ["① Forward noising"],
    "generate": ["② Reverse generation", "Generate & scrub"],
    "compare": ["② Reverse generation", "DDPM vs DDIM"],
    "denoise": ["② Reverse generation", "Noise, then denoise"],
    "objective": ["③ The objective"],
    # The questions' sub-tabs are clickable (they wrap instead of collapsing into a "⋯" menu).
    "question1": ["③ The objective", "1 · Fresh noise?"],
    "question4": ["③ The objective", "4 · Two ELBOs"],
    "twod": ["④ The whole distribution (2-D)"],
    "twod_reverse": ["④ The whole distribution (2-D)", "Reverse: particles to data"],
    "twod_variance": ["④ The whole distribution (2-D)", "Which variance is right?"],
    "twod_train": ["④ The whole distribution (2-D)", "Train it yourself"],
}


def overflow(page) -> dict:
    """The page's scroll width against the viewport's, and the widest elements that stick out to the right."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const wide = [];
            for (const el of document.querySelectorAll('body *')) {
                const box = el.getBoundingClientRect();
                if (box.width > 0 && box.right > width + 1 && getComputedStyle(el).position !== 'fixed') {
                    const name = `${el.tagName.toLowerCase()}#${el.id}.${[...el.classList].join('.')}`;
                    wide.push(`${name} ${Math.round(box.right)}`);
                }
            }
            return {scrollWidth: document.documentElement.scrollWidth, clientWidth: width, wide: wide.slice(0, 12)};
        }"""
    )


def open_tab(page, names: list[str]) -> None:
    for name in names:
        page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)  # the tab's layout settles (KaTeX, images)


@pytest.mark.parametrize("width,height", [(400, 860), (1366, 768)], ids=["400px", "1366x768"])
def test_layout_has_no_horizontal_overflow(space_url, tmp_path, width, height):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(space_url)
            for elem_id in ("fw-closed", "fw-strip", "fw-linear", "fw-cosine"):  # below the fold at 400 px
                wait_for_picture(page, elem_id, timeout_ms=90_000)
            for name, tabs in TABS.items():
                open_tab(page, tabs)
                page.evaluate("window.scrollTo(0, 0)")
                measured = overflow(page)
                save_screenshot(page, tmp_path, f"space_{name}_{width}x{height}.png")
                assert measured["scrollWidth"] == width, (name, measured)
            assert not page_errors, page_errors
        finally:
            browser.close()


def bottom(page, locator) -> float:
    box = locator.bounding_box()
    assert box is not None, locator
    return box["y"] + box["height"]


def test_each_tab_controls_and_outputs_are_in_the_first_screen_at_1366x768(space_url, tmp_path):
    """At 1366 x 768, without scrolling: every control of Generate, its button and pictures; both rows of DDPM vs
    DDIM and its progress line; the button of "Noise, then denoise"; each question's Run button; and the six
    pictures at one t in a single row."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(space_url)
            expect(page.locator("#fw-closed img")).to_be_visible(timeout=30_000)
            open_tab(page, TABS["generate"])
            page.evaluate("window.scrollTo(0, 0)")
            button = page.get_by_role("button", name="▶ Generate")
            expect(button).to_be_visible()
            save_screenshot(page, tmp_path, "space_generate_first_screen_1366x768.png", full_page=False)
            assert button.bounding_box()["y"] >= 0 and bottom(page, button) <= 768
            for elem_id in ("gen-steps", "gen-batch", "gen-x", "gen-x0"):  # the last controls, the pictures
                assert bottom(page, page.locator(f"#{elem_id}")) <= 768, elem_id

            open_tab(page, TABS["compare"])
            page.evaluate("window.scrollTo(0, 0)")
            for elem_id in ("cmp-ddim-x", "cmp-ddim-x0", "cmp-info"):
                assert bottom(page, page.locator(f"#{elem_id}")) <= 768, elem_id
            open_tab(page, TABS["denoise"])
            page.evaluate("window.scrollTo(0, 0)")
            assert bottom(page, page.get_by_role("button", name="▶ Noise, then denoise")) <= 768

            open_tab(page, TABS["objective"])
            page.evaluate("window.scrollTo(0, 0)")
            assert bottom(page, page.get_by_role("button", name="▶ Walk the bound")) <= 768
            rows = {page.locator(f"#ob-{name}").bounding_box()["y"] for name in ("xt", "score")}
            assert len(rows) == 1, rows  # the score beside x_t, not wrapped onto a row of its own
            for question, run in (("1 · Fresh noise?", "▶ Run both"), ("4 · Two ELBOs", "▶ Estimate both")):
                page.get_by_role("tab", name=question).click()
                page.wait_for_timeout(300)
                page.evaluate("window.scrollTo(0, 0)")
                assert bottom(page, page.get_by_role("button", name=run).last) <= 768, question
        finally:
            browser.close()


def test_a_phone_shows_the_button_then_the_pictures_then_the_settings(space_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 400, "height": 860})
            page.goto(space_url)
            wait_for_picture(page, "fw-closed", timeout_ms=90_000)  # the page is loaded (below the fold here)
            open_tab(page, TABS["generate"])
            button = page.get_by_role("button", name="▶ Generate").bounding_box()
            pictures = page.locator("#gen-x").bounding_box()
            settings = page.locator("#gen-steps").bounding_box()
            assert button["y"] < pictures["y"] < settings["y"], (button, pictures, settings)
            assert pictures["y"] - (button["y"] + button["height"]) < 100  # right below the button
            open_tab(page, TABS["compare"])
            run = page.get_by_role("button", name="▶ Run both").first.bounding_box()
            assert run["y"] < page.locator("#cmp-ddpm-x").bounding_box()["y"] < 860
        finally:
            browser.close()


def test_objective_tab_in_a_browser(space_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(space_url)
            page.get_by_role("tab", name="③ The objective").click()

            # The bound of the digit loaded on start, term by term; one t in detail (computed when the digit loads).
            expect(page.locator("#ob-image-caption")).to_contain_text("#300", timeout=30_000)
            page.get_by_role("button", name="▶ Walk the bound").click()
            expect(page.locator("#ob-summary")).to_contain_text("Bound done", timeout=60_000)
            expect(page.locator("#ob-terms")).to_be_visible()  # the plot (Gradio draws it without an <img>)
            for elem_id in ("ob-xt", "ob-eps", "ob-eps-hat", "ob-diff", "ob-x0-hat", "ob-score"):
                wait_for_picture(page, elem_id)
            expect(page.locator("#ob-numbers")).to_contain_text("w(t)", timeout=20_000)
            save_screenshot(page, tmp_path, "space_objective.png")

            # Question 4: both ELBO forms on the same trajectories; the recorded answer stays folded until the run
            # ends (predict first), then opens.
            page.get_by_role("tab", name="4 · Two ELBOs").click()
            expect(page.locator("#q4-image-caption")).to_contain_text("#300", timeout=30_000)
            answer = page.locator("#q4-answer").get_by_text("both forms average about the same bound")
            expect(answer).to_be_hidden()
            page.get_by_role("button", name="▶ Estimate both").click()
            expect(page.locator("#q4-info")).to_contain_text("trajectories of the same image", timeout=90_000)
            expect(answer).to_be_visible(timeout=10_000)
            save_screenshot(page, tmp_path, "space_question_elbo.png")
            assert not page_errors, page_errors
        finally:
            browser.close()


@pytest.mark.parametrize("width,height", [(1366, 768), (400, 860)], ids=["1366x768", "400px"])
def test_distribution_tab_in_a_browser(space_url, tmp_path, width, height):
    """The 2-D tab on the bundled 2-D models: the density, forward and score plots drawn on load, a reverse run, the
    variance question and (on the laptop) a short training run, each screenshotted."""
    from playwright.sync_api import expect, sync_playwright

    size = f"{width}x{height}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(space_url)
            open_tab(page, TABS["twod"])
            expect(page.locator("#twod-forward-numbers")).to_contain_text("t = 100", timeout=90_000)
            expect(page.locator("#twod-score-numbers")).to_contain_text("At t = 100", timeout=90_000)
            for elem_id in ("twod-forward-plot", "twod-score-plot"):
                expect(page.locator(f"#{elem_id} img")).to_be_visible(timeout=30_000)
            page.evaluate("window.scrollTo(0, 0)")
            save_screenshot(page, tmp_path, f"space_twod_{size}.png")

            open_tab(page, TABS["twod_reverse"])
            page.get_by_role("button", name="▶ Run both").last.click()
            expect(page.locator("#twod-reverse-info")).to_contain_text("done", timeout=90_000)
            expect(page.locator("#twod-reverse-plot img")).to_be_visible()
            save_screenshot(page, tmp_path, f"space_twod_reverse_{size}.png")

            open_tab(page, TABS["twod_variance"])
            expect(page.locator("#twod-variance-numbers")).to_contain_text("tighter bound", timeout=60_000)
            save_screenshot(page, tmp_path, f"space_twod_variance_{size}.png")

            if width > 1000:
                open_tab(page, TABS["twod_train"])
                steps = page.locator("#twod-train-steps input[type=number]")
                steps.fill("250")
                steps.press("Enter")
                page.get_by_role("button", name="▶ Train on this data").click()
                expect(page.locator("#twod-train-info")).to_contain_text("Trained 250 steps", timeout=120_000)
                save_screenshot(page, tmp_path, f"space_twod_train_{size}.png")
            assert page.evaluate("document.documentElement.scrollWidth") == width
            assert not page_errors, page_errors
        finally:
            browser.close()
