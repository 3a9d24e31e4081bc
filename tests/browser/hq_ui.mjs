// HQ's page (the same web app, served by the relay) in real headless Chromium, driven by
// Playwright: a viewer sees the org's vehicles from every station with their tracks and
// fields, the stations and their sync state, and no control to propose a mission; an
// operator on a phone proposes one; another org's viewer sees only what is shared with it,
// labelled with its owner. Saves screenshots. Prints what it found (harness.mjs);
// tests/tests/demo.rs judges it.
import { run, TIMEOUT, whileFrozen } from "./harness.mjs";

await run({
  url: { type: "string" },
  viewer: { type: "string" },
  operator: { type: "string" },
  partner: { type: "string" },
  shared: { type: "string" },
  vehicles: { type: "string" },
  stations: { type: "string" },
  "relay-pid": { type: "string" },
}, async (browser, a, found) => {
  const n = Number(a.vehicles);
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${a.url}/#token=${a.viewer}`);
  await page.waitForSelector("#status.live");
  found.title = await page.locator("#title").textContent();
  found.role_shown = await page.locator("#who").textContent();
  await page.waitForFunction((n) => document.querySelectorAll("#fleet-table tbody tr").length === n, n);
  found.rows = await page.locator("#fleet-table tbody tr").count();
  found.stations_in_rows = [...new Set(await page.$$eval("#fleet-table tbody tr td:nth-child(2)",
    (tds) => tds.map((td) => td.textContent.trim())))].sort();
  await page.waitForFunction((n) => document.querySelectorAll(".vehicle-marker").length === n, n);
  found.markers = await page.locator(".vehicle-marker").count();
  await page.waitForFunction((n) => [...document.querySelectorAll("path.track")]
    .filter((p) => (p.getAttribute("d") || "").includes("L")).length >= n, n);
  found.tracks = await page.$$eval("path.track", (ps) => ps
    .filter((p) => (p.getAttribute("d") || "").includes("L")).length);
  await page.waitForFunction(() => document.querySelectorAll("path.field").length > 0);
  found.fields = await page.locator("path.field").count();

  await page.locator('#tabs [data-tab="stations"]').click();
  await page.waitForFunction((s) => document.querySelectorAll("#edge-list li.connected").length === s,
    Number(a.stations));
  found.stations_connected = await page.locator("#edge-list li.connected").count();
  await page.locator('#tabs [data-tab="proposals"]').click();
  found.viewer_sees_propose = await page.locator("#propose").isVisible();

  await page.locator('#tabs [data-tab="fleet"]').click();
  await page.locator("#fleet-table tbody tr").first().click();
  await page.waitForSelector("#vehicle:not([hidden]) #vehicle-values dd");
  found.vehicle_values = await page.$$eval("#vehicle-values dt", (dts) => dts.map((d) => d.textContent));
  await page.screenshot({ path: `${a.shots}/hq-desktop.png` });
  found.page_errors = errors;

  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const onPhone = await phone.newPage();
  onPhone.setDefaultTimeout(TIMEOUT);
  await onPhone.goto(`${a.url}/#token=${a.operator}`);
  await onPhone.waitForSelector("#status.live");
  // Nothing pushes the page wider than the phone.
  found.phone_overflow_px = await onPhone.evaluate(
    () => document.documentElement.scrollWidth - window.innerWidth);
  await onPhone.locator('#tabs [data-tab="proposals"]').tap();
  await onPhone.waitForSelector("#propose:not([hidden])");
  await onPhone.waitForFunction(() => document.querySelectorAll("#propose-field option").length > 0);
  await onPhone.fill("#propose-title", "Survey block 1 after rain");
  await onPhone.selectOption("#propose-field", "block-1");
  await onPhone.locator("#propose button[type=submit]").tap();
  await onPhone.waitForFunction(() => document.getElementById("propose-result").textContent.startsWith("proposed"));
  await onPhone.waitForFunction(() => [...document.querySelectorAll("#proposal-list li")]
    .some((li) => li.textContent.includes("Survey block 1 after rain")));
  found.proposed = await onPhone.locator("#propose-result").textContent();
  await onPhone.screenshot({ path: `${a.shots}/hq-phone.png`, fullPage: true });

  // Another org, with a sharing agreement: the common operating picture.
  const partner = await desktop.newPage();
  partner.setDefaultTimeout(TIMEOUT);
  partner.on("pageerror", (e) => errors.push(String(e)));
  await partner.goto(`${a.url}/#token=${a.partner}`);
  await partner.waitForSelector("#status.live");
  const shared = Number(a.shared);
  await partner.waitForFunction((n) => document.querySelectorAll("#fleet-table tbody tr.shared").length === n
    && document.querySelectorAll(".vehicle-marker").length === n, shared);
  found.partner_rows = await partner.locator("#fleet-table tbody tr").count();
  found.partner_owners = [...new Set(await partner.$$eval("#fleet-table tbody tr .owner",
    (els) => els.map((e) => e.textContent.trim())))];
  await partner.locator("#fleet-table tbody tr").first().click();
  await partner.waitForSelector("#vehicle:not([hidden]) #vehicle-values dd");
  found.partner_title = await partner.locator("#vehicle-name").textContent();
  found.partner_values = await partner.$$eval("#vehicle-values dt", (dts) => dts.map((d) => d.textContent));
  found.partner_sees_rename = await partner.locator("#rename").isVisible();
  await partner.screenshot({ path: `${a.shots}/hq-shared.png` });

  // The relay goes silent (frozen, as a hung server would): the page must say so, not show
  // the last numbers as live; and come back when it does.
  await whileFrozen(page, a["relay-pid"], found);
  found.page_errors = errors;
});
