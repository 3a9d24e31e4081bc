// The station's web UI in real headless Chromium (Debian's), driven by Playwright: signs in
// as a viewer through the QR link, waits for the fleet, checks what a crew sees, a pilot's
// controls (acknowledging an alert among them), and the offline state; saves phone and
// desktop screenshots. Prints what it found (harness.mjs); tests/tests/web_ui.rs judges it.
import { run, TIMEOUT, whileFrozen } from "./harness.mjs";

await run({
  url: { type: "string" },
  viewer: { type: "string" },
  pilot: { type: "string" },
  vehicles: { type: "string" },
  "daemon-pid": { type: "string" },
  basemap: { type: "boolean", default: false },
}, async (browser, a, found) => {
  const n = Number(a.vehicles);
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${a.url}/#token=${a.viewer}`);
  await page.waitForSelector("#status.live");
  found.token_left_in_address = page.url().includes("token=");
  await page.waitForFunction((n) => document.querySelectorAll("#fleet-table tbody tr").length === n, n);
  found.rows = await page.locator("#fleet-table tbody tr").count();
  await page.waitForFunction((n) => document.querySelectorAll(".vehicle-marker").length === n, n);
  found.markers = await page.locator(".vehicle-marker").count();
  const where = () => page.$$eval(".vehicle-marker", (ms) => ms.map((m) => m.style.transform));
  const before = await where();
  await page.waitForFunction(
    (before) => [...document.querySelectorAll(".vehicle-marker")]
      .filter((m, i) => m.style.transform !== before[i]).length >= before.length - 1,
    before,
  );
  found.moved = (await where()).filter((t, i) => t !== before[i]).length;
  // Leaflet draws what is on screen, simplified: a track is a path of two points or more.
  const drawn = (selector) => page.$$eval(selector, (ps) => ps
    .filter((p) => (p.getAttribute("d") || "").includes("L")).length);
  // Every vehicle but one that holds still on the ground draws a track.
  await page.waitForFunction((n) => [...document.querySelectorAll("path.track")]
    .filter((p) => (p.getAttribute("d") || "").includes("L")).length >= n - 1, n);
  found.tracks = await drawn("path.track");
  found.fields = await drawn("path.field");
  found.geofences = await page.locator("path.geofence").count();
  await page.waitForFunction(() => /reached/.test(document.querySelector("#field-list")?.textContent));
  found.field_progress = await page.locator("#field-list li").first().textContent();
  if (a.basemap) {
    await page.waitForFunction(() => [...document.querySelectorAll("img.leaflet-tile")]
      .some((img) => img.src.includes("/tiles/") && img.complete && img.naturalWidth > 0));
    found.basemap_tile = true;
  }
  await page.locator("#fleet-table tbody tr").first().click();
  await page.waitForSelector("#vehicle:not([hidden]) #vehicle-values dd");
  found.viewer_sees_rename = await page.locator("#rename").isVisible();
  found.viewer_sees_controls = await page.locator("#control").isVisible();
  found.viewer_sees_param_fetch = await page.locator("#params-fetch").isVisible();
  found.vehicle_values = await page.$$eval("#vehicle-values dt", (dts) => dts.map((d) => d.textContent));
  // The chart of its history: drawn from the samples the API gave, in ink on the canvas.
  await page.waitForFunction(() => Number(document.querySelector("#vehicle-chart")?.dataset.points) >= 2);
  found.chart_points = Number(await page.locator("#vehicle-chart").getAttribute("data-points"));
  found.chart_inked_px = await page.$eval("#vehicle-chart", (c) => {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 3; i < d.length; i += 4) inked += d[i] > 0 ? 1 : 0;
    return inked;
  });
  await page.locator('#tabs [data-tab="alerts"]').click();
  await page.waitForSelector("#alert-list li");
  found.viewer_alerts = await page.locator("#alert-list li").count();
  found.viewer_sees_ack = await page.locator("#alert-list button.ack").count();
  found.role_shown = await page.locator("#who").textContent();
  await page.screenshot({ path: `${a.shots}/station-desktop.png` });

  // The station goes silent (frozen, as a hung Pi would): the page must say so.
  await whileFrozen(page, a["daemon-pid"], found);
  found.page_errors = errors;

  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const onPhone = await phone.newPage();
  onPhone.setDefaultTimeout(TIMEOUT);
  await onPhone.goto(`${a.url}/#token=${a.pilot}`);
  await onPhone.waitForFunction((n) => document.querySelectorAll(".vehicle-marker").length === n, n);
  // Nothing pushes the page wider than the phone.
  found.phone_overflow_px = await onPhone.evaluate(
    () => document.documentElement.scrollWidth - window.innerWidth);
  await onPhone.locator("#fleet-table tbody tr").first().tap();
  await onPhone.waitForSelector("#vehicle:not([hidden]) #vehicle-values dd");
  found.pilot_sees_rename = await onPhone.locator("#rename").isVisible();
  // A pilot commands the vehicle from the phone; the vehicle's answer comes back.
  await onPhone.locator("#control-mode").fill("LOITER");
  await onPhone.locator('#control button[data-command="mode"]').tap();
  await onPhone.waitForSelector(
    '#control-log li[data-outcome]:not([data-outcome="pending"]):not([data-outcome="in_progress"])');
  found.pilot_command = await onPhone.locator("#control-log li").first().textContent();
  // The pilot has the station read the vehicle's parameters; the page shows what came.
  await onPhone.locator("#params-fetch").tap();
  await onPhone.waitForFunction(() => /^\d+ parameters;/.test(
    document.querySelector("#params-summary").textContent));
  found.pilot_params = await onPhone.locator("#params-summary").textContent();
  await onPhone.screenshot({ path: `${a.shots}/station-phone.png`, fullPage: true });
  await onPhone.locator('#tabs [data-tab="alerts"]').tap();
  await onPhone.locator("#alert-list li:not(.acked) button.ack").first().tap();
  await onPhone.waitForSelector("#alert-list li.acked .acked-by");
  found.pilot_acked = await onPhone.locator("#alert-list li.acked .acked-by").first().textContent();
  // The viewer's page, open all along, hears of it through the stream.
  await page.waitForSelector("#alert-list li.acked .acked-by");
  found.viewer_saw_ack = await page.locator("#alert-list li.acked .acked-by").first().textContent();
  await onPhone.screenshot({ path: `${a.shots}/station-phone-alerts.png` });
});
