// End-to-end test of the search page, in the system's headless Chromium (never a downloaded
// browser). The server must already run on BASE_URL with an index holding QUERY_IMAGE.
//
// env: BASE_URL (http://127.0.0.1:PORT), QUERY_IMAGE (a photo that is in the index),
//      SCREENSHOT (optional: where to save a screenshot of the results, for the README),
//      CHROMIUM (default /usr/bin/chromium).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { chromium } from "playwright-core";

const baseUrl = required("BASE_URL");
const queryImage = required("QUERY_IMAGE");
const expectedName = basename(queryImage);
const timeout = 30_000;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name} (see tests/browser/run.sh)`);
  return value;
}

function step(message) {
  console.log(`browser test: ${message}`);
}

const firstCard = "#results .card:first-child";

async function firstResult(page) {
  return page.$eval(firstCard, (card) => ({
    id: card.dataset.id,
    name: card.querySelector(".name").textContent,
  }));
}

async function thumbnailsLoaded(page) {
  await page.waitForFunction(
    () => [...document.querySelectorAll("#results img")].every((img) => img.complete),
    null,
    { timeout },
  );
}

const profile = mkdtempSync(join(tmpdir(), "lookalike-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
  viewport: { width: 1280, height: 900 },
  deviceScaleFactor: 1,
});

try {
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));

  step(`open ${baseUrl}`);
  await page.goto(baseUrl);
  await page.waitForFunction(
    () => /\d+ images? · /.test(document.querySelector("#stats").textContent),
    null,
    { timeout },
  );
  const stats = await page.textContent("#stats");
  step(`stats corner says "${stats}"`);

  step(`upload ${expectedName}`);
  await page.setInputFiles("#file", queryImage);
  await page.waitForSelector(firstCard, { timeout });
  const first = await firstResult(page);
  assert.equal(first.name, expectedName, "the query photo itself should come back first");
  const score = Number(await page.textContent(`${firstCard} .score`));
  assert.ok(score > 0.99, `the query photo should score ~1, got ${score}`);
  assert.ok(await page.isHidden("#error"), "no error should be shown");
  assert.match(await page.textContent("#summary"), /\d+ results? in \d+ ms/);
  const original = await page.getAttribute(`${firstCard} .open`, "href");
  assert.equal(original, `/api/items/${first.id}/original`);
  await thumbnailsLoaded(page);
  const broken = await page.$$eval("#results img", (imgs) => imgs.filter((i) => i.naturalWidth === 0).length);
  assert.equal(broken, 0, "every thumbnail should load");

  if (process.env.SCREENSHOT) {
    await page.screenshot({ path: process.env.SCREENSHOT });
    step(`screenshot saved to ${process.env.SCREENSHOT}`);
  }

  step("click the second result: a search by that item runs");
  const second = await page.$eval("#results .card:nth-child(2)", (card) => ({
    id: card.dataset.id,
    name: card.querySelector(".name").textContent,
  }));
  await page.click("#results .card:nth-child(2) .thumb");
  await page.waitForFunction(
    (id) => document.querySelector("#results .card:first-child")?.dataset.id === id,
    second.id,
    { timeout },
  );
  assert.equal((await firstResult(page)).name, second.name);
  assert.equal(new URL(page.url()).hash, `#item=${second.id}`);

  step("search by a URL of an image on this server");
  await page.fill("#item-ref", `${baseUrl}/api/items/${first.id}/original`);
  await page.click("#item-form button[type=submit]");
  await page.waitForFunction(
    (id) => document.querySelector("#results .card:first-child")?.dataset.id === id,
    first.id,
    { timeout },
  );

  step("a URL of another site is refused on the page");
  await page.fill("#item-ref", "https://example.com/cat.jpg");
  await page.click("#item-form button[type=submit]");
  await page.waitForSelector("#error:not([hidden])", { timeout });
  assert.match(await page.textContent("#error"), /on this server/);

  step("a bad upload shows a visible error");
  await page.setInputFiles("#file", {
    name: "not-a-photo.png",
    mimeType: "image/png",
    buffer: Buffer.from("this is text, not a PNG"),
  });
  await page.waitForSelector("#error:not([hidden])", { timeout });
  assert.match(await page.textContent("#error"), /not an image/i);

  step("phone-sized screen: no horizontal scrolling, two columns");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${baseUrl}/#item=${first.id}`);
  await page.waitForSelector(firstCard, { timeout });
  const layout = await page.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    columns: getComputedStyle(document.querySelector("#results")).gridTemplateColumns.split(" ").length,
  }));
  assert.ok(layout.overflow <= 0, `page scrolls sideways by ${layout.overflow}px`);
  assert.equal(layout.columns, 2);

  assert.deepEqual(pageErrors, [], "the page should raise no script errors");
  step("all checks passed");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
