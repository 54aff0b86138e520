"""The dashboard's Alerts page in a real headless Chromium, against real `sundial api`
and `sundial scheduler` processes and a local webhook receiver."""

from __future__ import annotations

import time

from cryptography.fernet import Fernet
from playwright.async_api import expect

from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from sundial.core import notifications as n
from tests.conftest import service_env, start_api, wait_for
from tests.e2e.test_dashboard import new_page, pytestmark, shot, sign_in  # noqa: F401

KEY = Fernet.generate_key().decode()


async def test_an_admin_adds_a_channel_and_a_rule_and_sends_a_test(
        browser, processes, pool, db_url, amqp_url, receiver) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, admin_key = await svc.create_key("test", "ops-admin", "admin")
    _, viewer_key = await svc.create_key("test", "ops-viewer", "viewer")
    common = {"ENCRYPTION_KEY": KEY, "WORKER_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32"}
    base = await start_api(processes, db_url, amqp_url, **common)
    processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1, **common))

    page = await new_page(browser, base)
    await sign_in(page, admin_key)
    await page.click("nav >> text=Alerts")
    await page.fill("#c-name", "hooks")
    await page.fill("#c-url", f"{receiver.url}/sundial")
    await page.click("#channel-form button[type=submit]")
    await expect(page.locator("#signing-secret code")).to_be_visible()
    await expect(page.locator('tr[data-channel="hooks"]')).to_contain_text("webhook (signed)")
    signing_secret = await page.locator("#signing-secret code").inner_text()

    await page.fill("#r-name", "silent")
    await page.select_option("#r-kind", "schedule_silent")
    await page.fill("#r-within", "3600")
    await page.click("#rule-form button[type=submit]")
    await expect(page.locator('tr[data-rule="silent"]')).to_contain_text("no success for 1 hour")
    # A rule the API refuses says why.
    await page.fill("#r-name", "bad")
    await page.select_option("#r-kind", "outbox_backlog")
    await page.click("#rule-form button[type=submit]")
    await expect(page.locator("#flash")).to_contain_text("threshold")

    await page.locator('tr[data-channel="hooks"] >> text=Test').click()
    await expect(page.locator("#history tbody tr").first).to_have_attribute(
        "data-status", "delivered")
    await shot(page, "alerts")
    await wait_for(lambda: receiver.accepted, what="the test notification")
    [delivery] = receiver.accepted
    assert n.verify(signing_secret, delivery.body, delivery.headers["sundial-signature"],
                    now=time.time())

    viewer = await new_page(browser, base)
    await sign_in(viewer, viewer_key)
    await viewer.goto("/alerts")
    await expect(viewer.locator('tr[data-rule="silent"]')).to_be_visible()
    assert await viewer.locator("#channel-form, #rule-form").count() == 0
    assert await viewer.locator('tr[data-channel="hooks"] >> text=Test').count() == 0
    await shot(viewer, "alerts-viewer")
