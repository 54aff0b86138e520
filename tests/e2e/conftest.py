"""Fixtures of the end-to-end tests: the dashboard's browser."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, WAIT_MS


@pytest.fixture(scope="module")
async def chromium():
    """Debian's Chromium, headless, driven by Playwright (which downloads no browser): one
    per test file, as starting it takes longer than most of the tests that use it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(chromium):
    """The file's Chromium, for one test: what the test opens is in contexts of its own
    (cookies, storage, cache), all closed when it ends."""
    expect.set_options(timeout=WAIT_MS)
    before = set(chromium.contexts)
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            if context not in before:
                await context.close()
