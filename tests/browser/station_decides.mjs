// A pilot at a station's page (headless Chromium through Playwright) decides on a mission HQ
// proposed: the Missions tab lists it with its field, and the pilot rejects it with a note
// for HQ. Prints what it found (harness.mjs); tests/tests/demo.rs judges it.
import { run, TIMEOUT } from "./harness.mjs";

await run({
  url: { type: "string" },
  token: { type: "string" },
  title: { type: "string" },
}, async (browser, a, found) => {
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const page = await phone.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${a.url}/#token=${a.token}`);
  await page.waitForSelector("#status.live");
  await page.locator('#tabs [data-tab="proposals"]').tap();
  found.propose_form_shown = await page.locator("#propose").isVisible();
  const item = page.locator("#proposal-list li", { hasText: a.title });
  await item.locator("form.decide").waitFor();
  found.plan_inputs = await item.locator("form.decide input[type=number]").count();
  await item.locator('input[name="note"]').fill("vines too wet to fly over today");
  await item.locator('button[value="reject"]').tap();
  await page.locator("#proposal-list li", { hasText: "rejected by" }).waitFor();
  found.decided = await page.locator("#proposal-list li", { hasText: a.title }).locator(".decided").textContent();
  await page.screenshot({ path: `${a.shots}/station-proposal.png`, fullPage: true });
  found.page_errors = errors;
});
