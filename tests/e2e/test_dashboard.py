"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright),
against real `sundial api`, `sundial scheduler` and `sundial worker` processes.

Screenshots of every page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest
import tzdata
from playwright.async_api import expect

from sundial.api.schemas import JobCreate, JobUpdate, ScheduleFields
from sundial.api.service import Service
from sundial.api.settings import ApiSettings
from tests.conftest import ARTIFACTS, service_env, start_api, wait_for
from tests.unit.test_dashboard_signin import NEXT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ARTIFACTS / "screenshots"
STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium "
                                       "(apt-get install -y chromium; .ci/run installs it)")


async def new_page(browser, base_url: str = "", viewport: dict = LAPTOP):
    # Paris in English: fire times of a Paris cron read "09:00" whatever the host's zone.
    context = await browser.new_context(base_url=base_url or None, viewport=viewport,
                                        locale="en-GB", timezone_id="Europe/Paris")
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return page


async def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page, key: str) -> None:
    await page.goto("/")
    await page.wait_for_url(re.compile(r"/login\?"))
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/$"))


WORDS = [
    ({"kind": "interval", "interval_seconds": 300}, "every 5 min"),
    ({"kind": "interval", "interval_seconds": 3600}, "every hour"),
    ({"kind": "interval", "interval_seconds": 90}, "every 90 s"),
    ({"kind": "cron", "cron": "*/5 * * * *", "timezone": "UTC"}, "every 5 min"),
    ({"kind": "cron", "cron": "0 9 * * 1", "timezone": "Europe/Paris"},
     "At 09:00 on Monday (Europe/Paris)"),
    ({"kind": "cron", "cron": "30 18 * * MON-FRI", "timezone": "UTC"},
     "At 18:30 Monday through Friday (UTC)"),
    ({"kind": "cron", "cron": "@daily", "timezone": "Asia/Tokyo"}, "At 00:00 every day (Asia/Tokyo)"),
    ({"kind": "cron", "cron": "0 9,17 1 * *", "timezone": "UTC"},
     "At 09:00 and 17:00 on day 1 of the month (UTC)"),
    ({"kind": "cron", "cron": "15 * * * *", "timezone": "UTC"}, "every hour at :15"),
    # Too intricate for words: the expression itself, never a wrong sentence.
    ({"kind": "cron", "cron": "0 9 L * *", "timezone": "UTC"}, "cron 0 9 L * * (UTC)"),
]


async def test_schedules_read_as_words(browser) -> None:
    page = await new_page(browser)
    await page.set_content("<!doctype html><main></main>")
    await page.add_script_tag(path=str(STATIC / "dashboard.js"))
    said = await page.evaluate("specs => specs.map(s => Sundial.describeSchedule(s))",
                               [spec for spec, _ in WORDS])
    assert said == [words for _, words in WORDS]


async def test_sign_in_returns_only_to_this_site_and_shows_only_known_reasons(
        browser, processes, pool, db_url, amqp_url) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "viewer")
    base = await start_api(processes, db_url, amqp_url)
    page = await new_page(browser, base)
    await page.goto("/login")
    went = await page.evaluate("cases => cases.map(n => Sundial.safeNext(n))", [n for n, _ in NEXT])
    assert went == [path for _, path in NEXT]

    # A reason is only the name of one the page knows; other text is never shown.
    for text in ("Your session ended. Call +1 555 0100 to restore it", "constructor",
                 "__proto__", "<b>hi</b>"):
        await page.goto("/login?" + urlencode({"reason": text}))
        await expect(page.locator("#reason")).to_be_hidden()
    await page.goto("/login?" + urlencode({"reason": "revoked", "next": "/\\evil.example/"}))
    await expect(page.locator("#reason")).to_have_text("This API key was revoked. Paste another one.")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    await page.goto("/login?" + urlencode({"next": "/runs?status=failed"}))
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/runs?status=failed")


@pytest.mark.timeout(300)
async def test_operator_creates_runs_and_inspects_a_job(browser, processes, pool, db_url,
                                                        amqp_url, queue) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, admin_key = await svc.create_key("test", "ops-admin", "admin")
    _, viewer_key = await svc.create_key("test", "ops-viewer", "viewer")
    base = await start_api(processes, db_url, amqp_url)
    processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1))
    processes(["worker"], service_env(db_url, amqp_url, WORKER_QUEUES=queue,
                                      WORKER_HEARTBEAT_INTERVAL=1))

    page = await new_page(browser, base)
    await page.goto("/login")
    await page.fill("#key", "sdl_000000000000_not-a-key")
    await page.click("button[type=submit]")
    await page.locator('[data-field="key"] .error').filter(has_text="invalid API key").wait_for()
    await shot(page, "01-login")
    await sign_in(page, admin_key)

    # Overview: the scheduler is seen running, a worker online.
    await page.wait_for_selector("#scheduler-badge.running")
    await expect(page.locator("#stat-workers")).to_have_text("1")

    # A new job with a cron schedule: words at once, a bad cron refused beside its field.
    await page.click("nav >> text=Jobs")
    await page.click("#new-job")
    await page.wait_for_url(re.compile(r"/jobs/new$"))
    await page.fill("#name", "weekly-report")
    await page.fill("#description", "Monday morning numbers")
    await page.fill("#queue", queue)
    await page.select_option("#s-kind", "cron")
    await page.fill("#s-timezone", "Europe/Paris")
    await page.fill("#s-cron", "61 9 * * 1")
    await page.click("#save-job")
    cron_error = page.locator('#new-schedule [data-field="cron"] .error')
    await cron_error.wait_for(state="visible")
    assert "minute" in (await cron_error.text_content())
    await shot(page, "02-job-form-invalid-cron")
    await page.fill("#s-cron", "0 9 * * 1")
    await page.locator("#new-schedule [data-words]").filter(
        has_text="At 09:00 on Monday (Europe/Paris)").wait_for()
    # The live preview of the unsaved schedule: the next Mondays at 09:00 in Paris.
    await expect(page.locator("#new-schedule [data-times] li")).to_have_count(5)
    live = await page.locator("#new-schedule [data-times] li").all_text_contents()
    assert all(re.search(r"\b09:00:00\b", t) for t in live), live
    assert await pool.fetchval("SELECT count(*) FROM schedules") == 0, "a preview writes nothing"
    await shot(page, "03-job-form")
    await page.click("#save-job")
    await page.wait_for_url(re.compile(r"/jobs/\d+\?created=1$"))
    job_id = int(re.search(r"/jobs/(\d+)", page.url).group(1))

    # The job page previews the next fire times: Mondays at 09:00 in Paris.
    card = page.locator(".schedule-card")
    await card.locator(".words").filter(has_text="At 09:00 on Monday (Europe/Paris)").wait_for()
    await expect(card.locator("ol li")).to_have_count(5)
    times = await card.locator("ol li").all_text_contents()
    assert all(re.search(r"\b09:00:00\b", t) for t in times), times
    stored = await pool.fetchrow("SELECT kind, cron, timezone FROM schedules WHERE job_id = $1", job_id)
    assert dict(stored) == {"kind": "cron", "cron": "0 9 * * 1", "timezone": "Europe/Paris"}

    # Run now: the run shows up and reaches succeeded without a reload.
    await page.click("#run-now")
    await page.locator("#flash a").wait_for()
    await page.locator("#job-latest-runs .status-succeeded").wait_for()
    await shot(page, "04-job")
    await page.click("#job-latest-runs a[href^='/runs/']")
    await page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    await page.locator("#run-status .status-succeeded").wait_for()
    assert '"ok": true' in await page.text_content("#run-result")
    assert "manual by ops-admin" in await page.text_content("#run-facts")
    # A succeeded run can be neither cancelled nor retried.
    assert not await page.is_visible("#retry") and not await page.is_visible("#cancel")
    await shot(page, "05-run")
    assert await pool.fetchval("SELECT status FROM runs WHERE id = $1", run_id) == "succeeded"

    # The jobs table and the run history tell the same story.
    await page.click("nav >> text=Jobs")
    row = page.locator("#jobs tr[data-job='weekly-report']")
    await row.locator(".status-succeeded").wait_for()
    assert "At 09:00 on Monday (Europe/Paris)" in await row.locator(".schedule").text_content()
    await shot(page, "06-jobs")
    await page.click("nav >> text=Runs")
    await page.select_option("#f-status", "succeeded")
    await page.wait_for_url(re.compile(r"status=succeeded"))
    await page.locator(f"#runs tr[data-run='{run_id}']").wait_for()
    await shot(page, "07-runs")

    # The overview counts the run and draws it in the chart; a scheduler pass on demand.
    await page.click("nav >> text=Overview")
    await page.wait_for_selector("#chart rect[data-status='succeeded']")
    await page.click("#trigger-scheduler")
    await page.locator("#flash").filter(has_text="scheduler pass").wait_for()
    await shot(page, "08-overview")
    await page.set_viewport_size(PHONE)
    await shot(page, "09-overview-phone")
    await page.goto("/jobs")
    await row.locator(".status-succeeded").wait_for()
    assert await row.locator("[data-action='run-now']").is_visible()
    await shot(page, "10-jobs-phone")

    # A viewer reads everything, sees no write button, and a forged write is refused.
    viewer = await new_page(browser, base)
    await sign_in(viewer, viewer_key)
    await viewer.wait_for_selector("#scheduler-badge.running")
    assert await viewer.locator("#trigger-scheduler").count() == 0
    await viewer.goto("/jobs")
    await viewer.locator("#jobs tr[data-job='weekly-report'] .status-succeeded").wait_for()
    assert await viewer.locator("#new-job").count() == 0
    assert await viewer.locator("#jobs button").count() == 0
    await shot(viewer, "11-jobs-viewer")
    await viewer.goto(f"/jobs/{job_id}")
    await viewer.locator(".schedule-card .words").wait_for()
    for write in ("#run-now", "#run-with", "#run-form", "#backfill-form", "#toggle-job",
                  "#save-job", "#add-schedule", "#delete-job", ".schedule-card button"):
        assert await viewer.locator(write).count() == 0, write
    assert await viewer.is_disabled("#name")
    await viewer.goto(f"/runs/{run_id}")
    await viewer.locator("#run-status .status-succeeded").wait_for()
    assert await viewer.locator("#retry, #cancel").count() == 0
    await shot(viewer, "12-run-viewer")
    forged = await viewer.evaluate(
        """async (jobId) => {
             const r = await fetch(`/api/jobs/${jobId}/trigger`, {method: "POST",
               headers: {Authorization: "Bearer " + sessionStorage.getItem("sundial.key")}});
             return r.status;
           }""", job_id)
    assert forged == 403
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE job_id = $1", job_id) == 1

    # Retry a run that timed out: a new run, that succeeds once the job is fixed. Cancel a
    # run no worker will take.
    await page.set_viewport_size(LAPTOP)
    await svc.create_job("test", JobCreate(name="slow", handler="sleep", queue=queue,
                                           payload={"seconds": 30}, timeout_seconds=1,
                                           max_attempts=1))
    slow = (await svc.trigger_job("test", "slow"))[0]["run_id"]
    await page.goto(f"/runs/{slow}")
    await page.locator("#run-status .status-timed_out").wait_for()
    await expect(page.locator("#retry")).to_be_visible()
    assert not await page.is_visible("#cancel")
    await svc.update_job("test", "slow", JobUpdate(payload={"seconds": 0}))
    await page.click("#retry")
    await page.wait_for_url(re.compile(rf"/runs/(?!{slow}$)\d+$"))
    await page.locator("#run-status .status-succeeded").wait_for()
    assert "manual by ops-admin" in await page.text_content("#run-facts")
    await svc.create_job("test", JobCreate(name="no-worker-here", handler="noop", queue="idle"))
    stuck = (await svc.trigger_job("test", "no-worker-here"))[0]["run_id"]
    await page.goto(f"/runs/{stuck}")
    await page.locator("#run-status .status-queued").wait_for()
    await shot(page, "13-run-queued")
    await page.click("#cancel")
    await page.locator("#run-status .status-cancelled").wait_for()
    assert await pool.fetchval("SELECT status FROM runs WHERE id = $1", stuck) == "cancelled"


async def test_run_with_arguments_and_backfill_from_the_job_page(browser, processes, pool,
                                                                db_url, amqp_url, queue) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "admin")
    job = await svc.create_job("test", JobCreate(
        name="report", handler="noop", queue=queue, payload={"day": "x", "n": 1},
        schedules=[ScheduleFields(kind="cron", cron="0 * * * *")]))
    page = await new_page(browser, await start_api(processes, db_url, amqp_url))
    await sign_in(page, key)
    await page.goto(f"/jobs/{job['id']}")
    await page.locator(".schedule-card .words").wait_for()

    # Run with arguments: bad JSON is refused beside the field; a key runs once.
    await page.click("#run-with")
    await page.fill("#run-payload", '{"day": 3')
    await page.click("#run-form button[type=submit]")
    await expect(page.locator('#run-form [data-field="payload"] .error')).to_contain_text(
        "is not JSON")
    await page.fill("#run-payload", '{"day": "2024-03-01"}')
    await page.fill("#run-key", "report-0301")
    await shot(page, "15-job-run-with-arguments")
    await page.click("#run-form button[type=submit]")
    await page.locator("#flash").filter(has_text="queued").wait_for()
    run = await pool.fetchrow("SELECT payload, idempotency_key FROM runs")
    assert dict(run) == {"payload": {"day": "2024-03-01", "n": 1},
                         "idempotency_key": "report-0301"}
    await page.click("#run-with")
    await page.fill("#run-payload", '{"day": "2024-03-01"}')
    await page.fill("#run-key", "report-0301")
    await page.click("#run-form button[type=submit]")
    await page.locator("#flash").filter(has_text="has this key already").wait_for()
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1

    # Backfill the schedule's slots of a morning (the browser's zone: Paris), preview first.
    await page.click(".schedule-card >> text=Backfill…")
    await page.fill("#backfill-from", "2024-03-01T00:00:00")
    await page.fill("#backfill-to", "2024-03-01T09:00:00")
    await page.click("#backfill-preview")
    await expect(page.locator("#backfill-result")).to_contain_text(
        "10 slot(s) in the range, 0 with a run already: 10 run(s) would be made.")
    assert await pool.fetchval("SELECT count(*) FROM runs") == 1
    await page.click("#backfill-form button[type=submit]")
    await expect(page.locator("#backfill-result")).to_contain_text("10 run(s) made.")
    await shot(page, "16-job-backfill")
    slots = await pool.fetch("SELECT scheduled_for FROM runs WHERE trigger = 'backfill' "
                             "ORDER BY scheduled_for")
    assert [r["scheduled_for"].hour for r in slots] == [23, *range(9)], "Paris is UTC+1"
    await page.fill("#backfill-to", "2999-01-01T00:00:00")
    await page.click("#backfill-preview")
    await expect(page.locator('#backfill-form [data-field="to"] .error')).to_contain_text(
        "in the future")


@pytest.mark.timeout(180)
async def test_a_schedule_the_scheduler_set_aside_shows_why(browser, processes, pool, db_url,
                                                            amqp_url, queue) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "admin")
    job = await svc.create_job("test", JobCreate(name="nightly", handler="noop", queue=queue))
    poison = await pool.fetchval(
        "INSERT INTO schedules (job_id, kind, cron, next_run_at) "
        "VALUES ($1, 'cron', '61 * * * *', now()) RETURNING id", job["id"])
    base = await start_api(processes, db_url, amqp_url)
    scheduler = processes(["scheduler"], service_env(db_url, amqp_url, SCHEDULER_POLL_INTERVAL=1))
    await wait_for(lambda: pool.fetchval("SELECT set_aside_at IS NOT NULL FROM schedules "
                                         "WHERE id = $1", poison), what="the row set aside")

    page = await new_page(browser, base)
    await sign_in(page, key)
    await page.goto(f"/jobs/{job['id']}")
    card = page.locator(f".schedule-card[data-schedule='{poison}']")
    await expect(card.locator(".pill")).to_have_text("set aside")
    await expect(card.locator("[data-set-aside]")).to_contain_text(
        f"schedule {poison}: cron '61 * * * *': minute '61' must be 0-59")
    await shot(page, "14-job-schedule-set-aside")
    await page.goto("/jobs")
    await expect(page.locator("#jobs tr[data-job='nightly'] .schedule")).to_contain_text(
        "(set aside: cannot be planned)")

    # The zone rules in use: logged at the scheduler's start, shown on the overview.
    assert f'"tzdata": "{tzdata.IANA_VERSION}"' in scheduler.output()
    assert await pool.fetchval("SELECT tzdata FROM scheduler_instances") == tzdata.IANA_VERSION
    await page.goto("/")
    await expect(page.locator("#scheduler-tzdata")).to_have_text(f"tzdata {tzdata.IANA_VERSION}")


async def test_a_blocked_broker_shows_on_the_overview(browser, processes, pool, db_url,
                                                      amqp_url) -> None:
    """A scheduler whose publishing RabbitMQ blocks (its status row says so, as a memory
    alarm makes it write) shows on the overview, with the reason; and clears."""
    from sundial.core.sql import q

    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "viewer")
    await pool.execute(q("record_status"), "scheduler@h:1", 1.0, 1, 0, 0, "h", 1,
                       tzdata.IANA_VERSION, await pool.fetchval("SELECT now()"), "low on memory")
    base = await start_api(processes, db_url, amqp_url)
    page = await new_page(browser, base)
    await sign_in(page, key)
    await page.goto("/")
    broker = page.locator("#scheduler-broker")
    await expect(broker.locator(".badge")).to_have_text("blocked")
    await expect(broker).to_contain_text("(low on memory): runs wait in the outbox")
    await shot(page, "15-overview-broker-blocked")
    await pool.execute(q("record_status"), "scheduler@h:1", 1.0, 2, 0, 0, "h", 1,
                       tzdata.IANA_VERSION, None, None)
    await expect(broker).to_have_text("publishing")


async def test_api_docs_load_nothing_from_another_site_and_obey_the_csp(
        browser, processes, db_url, amqp_url) -> None:
    base = await start_api(processes, db_url, amqp_url)
    page = await new_page(browser, base)
    requested: list[str] = []
    complaints: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: complaints.append(message.text)
            if message.type in ("error", "warning") else None)
    response = await page.goto("/docs")
    assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
    # Swagger UI rendered the schema: every operation is listed.
    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() > 20
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Sundial")
    await shot(page, "11-api-docs")
    assert requested and all(url.startswith(base + "/") for url in requested), requested
    assert not [c for c in complaints if "Content Security Policy" in c], complaints


@pytest.mark.timeout(180)
async def test_times_carry_their_zone_and_runs_offer_what_their_state_allows(
        browser, processes, pool, db_url, amqp_url) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "admin")
    job = await svc.create_job("test", JobCreate.model_validate({
        "name": "paris-night", "handler": "noop", "queue": "nobody-listens",
        "schedules": [{"kind": "cron", "cron": "0 2 * * *", "timezone": "Europe/Paris"}]}))
    base = await start_api(processes, db_url, amqp_url)
    # A browser in New York: a 02:00 Paris cron is 20:00 or 21:00 there.
    context = await browser.new_context(base_url=base, viewport=LAPTOP, locale="en-GB",
                                        timezone_id="America/New_York")
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text)
            if message.type in ("error", "warning") else None)
    await sign_in(page, key)

    # The favicon is served from this site, under the CSP.
    icon = await page.locator("link[rel=icon]").get_attribute("href")
    assert icon.startswith("/static/favicon.svg")
    for path in (icon, "/favicon.ico"):
        fetched = await page.request.get(base + path)
        assert fetched.ok and fetched.headers["content-type"].startswith("image/svg+xml"), path

    # Fire times read in the schedule's own zone, named, whatever the browser's zone.
    await page.goto(f"/jobs/{job['id']}")
    card = page.locator(".schedule-card")
    await expect(card.locator("ol li")).to_have_count(5)
    for text in await card.locator("ol li").all_text_contents():
        assert re.search(r"\b02:00:00 (CET|CEST)$", text), text
    await expect(card.locator("[data-next-run]")).to_contain_text(re.compile(r"02:00:00 CES?T"))
    await page.goto("/jobs")
    await expect(page.locator("#jobs-count")).to_have_text("1 of 1 job")
    await expect(page.locator("#jobs tr[data-job='paris-night'] td[data-label='Next run']")
                 ).to_contain_text(re.compile(r"\d{4}, 02:00:00 CES?T"))
    await shot(page, "20-fire-times-in-the-schedule-zone")

    # Other times: date, time and zone, in the browser's zone until the user picks another.
    runs = [(await svc.trigger_job("test", "paris-night"))[0]["run_id"] for _ in range(3)]
    created = await pool.fetchval("SELECT created_at FROM runs WHERE id = $1", runs[0])
    await page.goto(f"/runs/{runs[0]}")
    await expect(page.locator("#zone")).to_have_value("browser")
    new_york = created.astimezone(ZoneInfo("America/New_York"))
    facts = page.locator("#run-facts")
    await expect(facts).to_contain_text(new_york.strftime("%Y, %H:%M:%S GMT-"))
    await page.select_option("#zone", "UTC")
    await expect(facts).to_contain_text(created.astimezone(UTC).strftime("%Y, %H:%M:%S UTC"))
    await page.reload()  # remembered
    await expect(page.locator("#zone")).to_have_value("UTC")
    await expect(facts).to_contain_text(created.astimezone(UTC).strftime("%Y, %H:%M:%S UTC"))
    await expect(page.locator("#cancel")).to_be_visible()
    assert not await page.is_visible("#retry")
    await shot(page, "21-run-times-in-utc")

    # The run list's time range is read in the zone picked, kept as instants in the address.
    await page.goto("/runs?job=paris-night")
    await expect(page.locator("label[for=f-since]")).to_have_text("From (UTC)")
    hour_before = (created.astimezone(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    await page.fill("#f-since", hour_before.strftime("%Y-%m-%dT%H:%M"))
    await page.wait_for_url(re.compile("since=" + re.escape(quote(
        hour_before.strftime("%Y-%m-%dT%H:%M:00.000Z")))))
    await page.select_option("#zone", "browser")  # the same instant, in New York
    await expect(page.locator("#f-since")).to_have_value(
        hour_before.astimezone(ZoneInfo("America/New_York")).strftime("%Y-%m-%dT%H:%M"))
    await expect(page.locator("label[for=f-since]")).to_have_text("From (America/New_York)")

    # The run list says how many runs its filters select; bulk cancel, then bulk retry.
    await expect(page.locator("#runs-count")).to_have_text("3 of 3 runs")
    await page.click("#bulk-cancel")
    await page.locator("#flash").filter(has_text="3 cancelled.").wait_for()
    assert await pool.fetch("SELECT DISTINCT status FROM runs") == [("cancelled",)]
    await page.select_option("#f-status", "cancelled")
    await page.click("#bulk-retry")
    await page.locator("#flash").filter(has_text="3 new runs queued.").wait_for()
    await page.select_option("#f-status", "")
    await expect(page.locator("#runs-count")).to_have_text("6 of 6 runs")
    await shot(page, "22-runs-bulk")
    assert await pool.fetchval("SELECT count(*) FROM runs WHERE status = 'queued'") == 3
    assert not [c for c in complaints if "Content Security Policy" in c], complaints


@pytest.mark.timeout(180)
async def test_queues_are_paused_and_resumed_from_the_overview(browser, processes, pool, db_url,
                                                               amqp_url) -> None:
    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "admin")
    await svc.create_job("test", JobCreate(name="mailer", handler="noop", queue="mail"))
    await svc.create_job("test", JobCreate(name="reports", handler="noop", queue="reports"))
    base = await start_api(processes, db_url, amqp_url)
    page = await new_page(browser, base)
    await sign_in(page, key)

    mail = page.locator("#queues tr[data-queue='mail']")
    await expect(mail.locator(".pill")).to_have_text("publishing")
    await mail.locator("[data-action='pause']").click()
    await expect(mail.locator(".pill")).to_have_text("paused")
    assert await pool.fetchval("SELECT paused_by FROM queue_pauses WHERE queue = 'mail'") == "ops"
    held = (await svc.trigger_job("test", "mailer"))[0]["run_id"]
    assert await pool.fetchval("SELECT published_at FROM runs WHERE id = $1", held) is None
    await expect(mail.locator("td[data-label='Queued runs']")).to_have_text("1")

    await page.click("#pause-all")
    await expect(page.locator("#all-paused")).to_contain_text("Every queue is paused since")
    await expect(page.locator("#queues tr[data-queue='reports'] .pill")).to_have_text(
        "held (all paused)")
    await shot(page, "23-queues-paused")
    await page.click("#pause-all")  # now "Resume every queue"
    await expect(page.locator("#all-paused")).to_be_hidden()
    await mail.locator("[data-action='resume']").click()
    await expect(mail.locator(".pill")).to_have_text("publishing")
    assert await pool.fetchval("SELECT count(*) FROM queue_pauses") == 0


async def test_a_job_declared_in_code_is_marked_and_offers_only_what_sync_keeps(
        browser, processes, pool, db_url, amqp_url, queue) -> None:
    from sundial.api.sync import sync
    from sundial.core.declarations import build

    svc = Service(pool, ApiSettings(DATABASE_URL=db_url, RABBITMQ_URL=amqp_url))
    _, key = await svc.create_key("test", "ops", "admin")
    await sync(svc, [build("declared", handler="noop", payload=None, where="tests", queue=queue,
                           cron="0 9 * * 1", timezone="Europe/Paris")], actor="test")
    made = await svc.create_job("test", JobCreate(name="made", handler="noop", queue=queue))
    declared = await svc.get_job("declared")
    base = await start_api(processes, db_url, amqp_url)

    page = await new_page(browser, base)
    await sign_in(page, key)
    await page.goto("/jobs")
    await expect(page.locator("#jobs tr[data-job='declared'] [data-managed=code]")).to_have_text("code")
    await expect(page.locator("#jobs tr[data-job='made'] [data-managed]")).to_have_count(0)

    await page.goto(f"/jobs/{declared['id']}")
    await expect(page.locator("#job-enabled [data-managed=code]")).to_be_visible()
    await expect(page.locator("#managed-note")).to_contain_text("sundial sync")
    for hidden in ("#save-job", "#delete-job", "#add-schedule"):
        await expect(page.locator(hidden)).to_be_hidden()
    card = page.locator(".schedule-card").first
    await expect(card.get_by_role("button", name="Pause")).to_be_visible()
    await expect(card.get_by_role("button", name="Edit")).to_have_count(0)
    await expect(card.get_by_role("button", name="Delete")).to_have_count(0)
    await expect(page.locator("#run-now")).to_be_visible()
    await shot(page, "15-job-declared-in-code")

    await page.goto(f"/jobs/{made['id']}")
    await expect(page.locator("#delete-job")).to_be_visible()
    await expect(page.locator("#managed-note")).to_be_hidden()
