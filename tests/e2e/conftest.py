"""Fixtures of the end-to-end tests: the dashboard's browser."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, WAIT_MS


@pytest.fixture
async def browser():
    """Debian's Chromium, headless, driven by Playwright (which downloads no browser)."""
    from playwright.async_api import async_playwright

    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
