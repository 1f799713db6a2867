"""Playwright against Debian's Chromium (never a downloaded browser) and pytest-django's live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("ARTIFACTS_DIR") or REPO / "artifacts" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def chromium():
    """Module-scoped: Playwright stops (and its event loop with it) before other test modules run."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true: browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses to run in one without this.
    # Set only while the browser runs, so subprocesses of later tests (manage.py check --deploy) never see it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )
        try:
            yield browser
        finally:
            browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Every page reports what the Content-Security-Policy blocked; the binding survives navigations.
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.reportCspViolation(e.effectiveDirective + " blocked " + (e.blockedURI || "inline") + " on " + e.documentURI
    + " (" + (e.sourceFile || "page") + ":" + e.lineNumber + ":" + e.columnNumber + " " + e.sample + ")");
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    """What the policy blocked in any page of the test (events and console errors); the test fails if any."""
    found: list[str] = []
    yield found
    assert found == [], "Content-Security-Policy violations: " + "; ".join(found)


@pytest.fixture
def new_page(chromium, csp_violations):
    """A fresh browser context (its own cookies) per call, closed after the test; CSP violations fail the test."""
    contexts = []

    def make():
        context = chromium.new_context(viewport={"width": 1360, "height": 900})
        context.set_default_timeout(10_000)
        context.expose_binding("reportCspViolation", lambda _source, text: csp_violations.append(text))
        context.add_init_script(_REPORT_CSP)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: csp_violations.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text else None)
        return page

    yield make
    for context in contexts:
        context.close()
