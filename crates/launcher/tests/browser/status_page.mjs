// Drives the launcher's status page in headless Chromium (Debian's, not a downloaded one):
// loads it and sees only the login form (no data without a session), logs in as admin, sees
// the plugins, stops one plugin and sees its state change live (no reload), saves a
// screenshot, then logs out and sees the data go.
//
//   node status_page.mjs <url> <admin token> <plugin> <screenshot.png>
//
// Run by crates/launcher/tests/web.rs. Exits non-zero with a message on any failure.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, token, plugin, shot] = process.argv.slice(2);
if (!url || !token || !plugin || !shot) {
  console.error("usage: status_page.mjs <url> <token> <plugin> <screenshot>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "hivehub-chromium-"));
const T = 15000;

function log(...a) {
  console.log(...a);
}

let context;
try {
  // A persistent context on a fresh, empty profile is how playwright takes --user-data-dir.
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 720 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  // Without a session the page's first /api/status is answered 401, which Chromium reports as
  // a console error; that one is expected (before the login and after the logout).
  let expect401 = true;
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expect401 && m.text().includes("401")) return;
    problems.push(`console error: ${m.text()}`);
  });
  const offsite = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(new URL(url).origin) && !r.url().startsWith("data:")) offsite.push(r.url());
  });

  const seen = [];
  page.on("request", (r) => seen.push(new URL(r.url()).pathname));
  const firstStatus = page.waitForResponse((r) => new URL(r.url()).pathname === "/api/status", {
    timeout: T,
  });
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: T });
  // Before login: the form, and no data at all (the status is asked for and refused).
  const refused = await firstStatus;
  if (refused.status() !== 401) throw new Error(`/api/status without a session: ${refused.status()}`);
  await page.locator("#login").waitFor({ state: "visible", timeout: T });
  await page.waitForFunction(() => document.body.classList.contains("anon"), null, { timeout: T });
  if (await page.locator("#plugins tbody tr").count()) throw new Error("plugins listed before login");
  if (await page.locator("#data").isVisible()) throw new Error("data shown before login");
  if (seen.includes("/events")) throw new Error("the event stream was opened before login");
  const before = await page.content();
  if (before.includes(`data-name="${plugin}"`)) throw new Error("plugin data in the page before login");
  log("before login: login form only");

  // Log in as admin by typing the token into the form.
  await page.fill('#login input[name="clientID"]', "admin");
  await page.fill('#login input[name="token"]', token);
  expect401 = false;
  await page.click('#login button[type="submit"]');
  await page.locator("#who").waitFor({ state: "visible", timeout: T });
  const row = page.locator(`tr[data-name="${plugin}"]`);
  await row.waitFor({ timeout: T });
  await page.locator('tr[data-name="hubcore"]').waitFor({ timeout: T });
  await page.waitForFunction(
    (n) => document.querySelector(`tr[data-name="${n}"]`)?.dataset.state === "running",
    plugin,
    { timeout: T },
  );
  const rows = await page.locator("#plugins tbody tr").count();
  log(`plugins listed: ${rows}`);
  // Live: the SSE stream is connected.
  await page.waitForFunction(() => document.querySelector("#livetext")?.textContent === "live", null, {
    timeout: T,
  });
  const who = await page.textContent("#user");
  if (who !== "admin") throw new Error(`logged in as '${who}'`);
  const html = await page.content();
  if (html.includes(token)) throw new Error("the page contains the token");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "hivehub_session");
  if (!session || !session.httpOnly || session.sameSite !== "Strict") {
    throw new Error(`bad session cookie: ${JSON.stringify(session)}`);
  }
  const jsCookie = await page.evaluate(() => document.cookie);
  if (jsCookie.includes("hivehub_session")) throw new Error("the session cookie is readable by scripts");
  log(`logged in as ${who}`);

  // Wait for a few samples so the sparklines have something to draw, then stop the plugin.
  await page.waitForFunction(
    (n) => document.querySelector(`tr[data-name="${n}"] td.cpu polyline`) !== null,
    plugin,
    { timeout: T },
  );
  await page.waitForTimeout(3000);
  await row.locator("button.stop").click();
  await page.waitForFunction(
    (n) => document.querySelector(`tr[data-name="${n}"]`)?.dataset.state === "disabled",
    plugin,
    { timeout: T },
  );
  const state = await row.locator(".state").textContent();
  log(`${plugin} state after stop: ${state}`);
  await page.locator("#events li").first().waitFor({ timeout: T });
  const events = await page.locator("#events li").allTextContents();
  if (!events.some((e) => e.includes(`${plugin} stopped by admin`))) {
    throw new Error(`no stop event on the page: ${JSON.stringify(events)}`);
  }
  // A little more time for the sparklines of the other plugins.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot: ${shot}`);
  // And at a phone's width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const phoneShot = shot.replace(/\.png$/, "-phone.png");
  await page.screenshot({ path: phoneShot, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) throw new Error(`the page is ${overflow}px wider than a phone`);
  log(`screenshot: ${phoneShot}`);

  // Logging out takes the data away again.
  expect401 = true;
  await page.click("#logout");
  await page.locator("#login").waitFor({ state: "visible", timeout: T });
  await page.waitForFunction(() => document.querySelectorAll("#plugins tbody tr").length === 0, null, {
    timeout: T,
  });
  if (await page.locator("#data").isVisible()) throw new Error("data shown after logout");
  log("logged out: data gone");

  if (offsite.length) throw new Error(`requests off the launcher: ${offsite.join(", ")}`);
  if (problems.length) throw new Error(problems.join("\n"));
  log("status page ok");
} catch (e) {
  console.error(`status page test failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
