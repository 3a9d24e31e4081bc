// What the browser tests share: Debian's chromium driven by playwright-core (it downloads no
// browser), their arguments, and one JSON object printed last with what a test found, which
// the Rust side (`trellis_tests::browser`) reads and judges. An exception is reported as
// `found.error`, never as a crash without a result.
import { chromium } from "playwright-core";
import { parseArgs } from "node:util";

/** How long any one wait may take. */
export const TIMEOUT = 30_000;

/**
 * Freezes the daemon `pid` (SIGSTOP, as a hung machine) and records in `found` what `page`
 * then says (`offline_text`, and `stale` when it greys its numbers); thaws it (always) and
 * waits for the page to be live again (`live_again`).
 */
export async function whileFrozen(page, pid, found) {
  process.kill(Number(pid), "SIGSTOP");
  try {
    await page.waitForSelector("#status.offline", { timeout: 10_000 });
    found.offline_text = await page.locator("#status").textContent();
    found.stale = await page.locator("main.stale").count() === 1;
  } finally {
    process.kill(Number(pid), "SIGCONT");
  }
  await page.waitForSelector("#status.live", { timeout: TIMEOUT });
  found.live_again = true;
}

/** Parses `options` (plus `--shots`, the screenshot folder) and runs `test(browser, args, found)`. */
export async function run(options, test) {
  const { values } = parseArgs({ options: { ...options, shots: { type: "string" } } });
  const found = {};
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    await test(browser, values, found);
  } catch (e) {
    found.error = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(found));
}
