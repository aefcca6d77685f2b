// End-to-end test of the search page, in the system's headless Chromium (never a downloaded
// browser). The server must already run on BASE_URL with an index holding QUERY_IMAGE.
//
// env: BASE_URL (http://127.0.0.1:PORT), QUERY_IMAGE (a photo that is in the index),
//      QUERY_VIDEO_FRAME (a picture of a moment of the indexed video VIDEO_NAME),
//      OBJECT_SCENE (an indexed photo of a scene that holds the object of the indexed photo
//      OBJECT_NAME), DETAIL_IMAGE (a detail cut from the lower left of the indexed photo
//      DETAIL_NAME),
//      TOKEN (the server's write token), NEAR_DUPLICATE (the name of an indexed smaller copy
//      of skimage's astronaut.png), IDENTICAL_KEPT and IDENTICAL_MOVED (two indexed identical
//      files, the second the older: the step keeps the first and moves the second), DB (the
//      index folder: moved files go to DB/moved),
//      WORDS_NAME (the name of an indexed photo that "dog" finds first, WORDS_LABEL its top
//      label's first name), FILTER_FOLDER (an indexed folder, its path as indexed),
//      FILTER_QUERY (an indexed photo outside FILTER_FOLDER),
//      SCREENSHOT (optional: where to save a screenshot of the results, for the README),
//      CHROMIUM (default /usr/bin/chromium).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { chromium } from "playwright-core";

const baseUrl = required("BASE_URL");
const queryImage = required("QUERY_IMAGE");
const expectedName = basename(queryImage);
const videoFrame = required("QUERY_VIDEO_FRAME");
const videoName = required("VIDEO_NAME");
const objectScene = required("OBJECT_SCENE");
const objectName = required("OBJECT_NAME");
const detailImage = required("DETAIL_IMAGE");
const detailName = required("DETAIL_NAME");
const token = required("TOKEN");
const nearDuplicate = required("NEAR_DUPLICATE");
const identicalKept = realpathSync(required("IDENTICAL_KEPT"));
const identicalMoved = realpathSync(required("IDENTICAL_MOVED"));
const db = realpathSync(required("DB"));
const wordsName = required("WORDS_NAME");
const wordsLabel = required("WORDS_LABEL");
const filterFolder = required("FILTER_FOLDER");
const filterQuery = required("FILTER_QUERY");
const timeout = 30_000;
// A listing of duplicates scans the images indexed since the last scan first (run.sh has the
// server do the first, long one before the page asks).
const scanTimeout = 120_000;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name} (see tests/browser/run.sh)`);
  return value;
}

// A pattern matching exactly `text`.
function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
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

  step(`"Match objects": ${basename(objectScene)} finds ${objectName} right after itself, marked`);
  await page.check("#verify");
  await page.setInputFiles("#file", objectScene);
  await page.waitForFunction(
    (name) => document.querySelector("#results .card:nth-child(2) .name")?.textContent === name,
    objectName,
    { timeout },
  );
  assert.match(await page.textContent("#results .card:nth-child(2) .score"), /· \d+ matches$/);
  assert.ok(await page.$eval("#results .card:nth-child(2)", (card) => card.classList.contains("verified")));
  await page.uncheck("#verify");

  step(`a detail of ${detailName} finds it first, outlined on the thumbnail and in the viewer`);
  await page.setInputFiles("#file", detailImage);
  await page.waitForFunction(
    (name) => document.querySelector("#results .card:first-child .name")?.textContent === name,
    detailName,
    { timeout },
  );
  await thumbnailsLoaded(page);
  // The outline lies in the lower left of the thumbnail: where the detail was cut from.
  const outline = await page.$eval(firstCard, (card) => {
    const region = card.querySelector(".region");
    const thumb = card.querySelector(".thumb").getBoundingClientRect();
    const box = region.getBoundingClientRect();
    return {
      located: card.classList.contains("located"),
      hidden: region.hidden,
      cx: (box.left + box.width / 2 - thumb.left) / thumb.width,
      cy: (box.top + box.height / 2 - thumb.top) / thumb.height,
      width: box.width,
    };
  });
  assert.ok(outline.located && !outline.hidden && outline.width > 4, JSON.stringify(outline));
  assert.ok(outline.cx < 0.55 && outline.cy > 0.45, `outline away from the lower left: ${JSON.stringify(outline)}`);
  await page.click(`${firstCard} .open`);
  await page.waitForSelector("#player[open]", { timeout });
  await page.waitForFunction(
    () => document.querySelector("#player-image").complete
      && !document.querySelector("#player-region").hidden,
    null,
    { timeout },
  );
  await page.click("#player-close");
  await page.waitForFunction(() => !document.querySelector("#player").open, null, { timeout });

  step(`upload a frame of ${videoName}: the video comes back at that moment, and plays from it`);
  await page.setInputFiles("#file", videoFrame);
  await page.waitForFunction(
    (name) => document.querySelector("#results .card:first-child .name")?.textContent === name,
    videoName,
    { timeout },
  );
  const videoCard = await page.$eval(firstCard, (card) => ({
    t: Number(card.dataset.t),
    video: card.classList.contains("video"),
    badge: card.querySelector(".moment").hidden ? null : card.querySelector(".moment-time").textContent,
  }));
  assert.ok(videoCard.video, "the first result should be marked as a video");
  assert.ok(Math.abs(videoCard.t - 6) <= 2.5, `the frame at ~6 s should match, got t=${videoCard.t}`);
  const mmss = `${Math.floor(videoCard.t / 60)}:${String(Math.floor(videoCard.t % 60)).padStart(2, "0")}`;
  assert.equal(videoCard.badge, mmss, "the badge shows the moment as m:ss");
  const videoCount = await page.$$eval("#results .card.video", (cards) => cards.length);
  assert.equal(videoCount, 1, "grouped results show the video once");
  await page.click(`${firstCard} .open`);
  await page.waitForSelector("#player[open]", { timeout });
  await page.waitForFunction(
    () => document.querySelector("#player-video").readyState >= 1,
    null,
    { timeout },
  );
  const position = await page.$eval("#player-video", (v) => ({ t: v.currentTime, error: v.error?.code }));
  assert.equal(position.error, undefined, "the video should load");
  step(`the result says ${videoCard.badge} (t=${videoCard.t}); the player is at ${position.t.toFixed(2)} s`);
  assert.ok(
    Math.abs(position.t - videoCard.t) < 1,
    `the video should start at ${videoCard.t} s, is at ${position.t} s`,
  );
  await page.click("#player-close");
  await page.waitForFunction(() => !document.querySelector("#player").open, null, { timeout });

  step(`words: typing "dog" suggests it; Enter finds ${wordsName} first, labelled ${wordsLabel}`);
  await page.locator("#words").pressSequentially("dog", { delay: 30 });
  await page.waitForFunction(
    () => [...document.querySelectorAll("#words-suggestions option")].some((o) => o.value === "dog"),
    null,
    { timeout },
  );
  const suggested = await page.$$eval("#words-suggestions option", (options) => options.map((o) => o.value));
  step(`suggestions for "dog": ${suggested.join(", ")}`);
  await page.press("#words", "Enter");
  await page.waitForFunction(
    (name) => document.querySelector("#results .card:first-child .name")?.textContent === name,
    wordsName,
    { timeout },
  );
  const label = await page.textContent(`${firstCard} .label-line`);
  step(`${wordsName} is labelled "${label}"`);
  assert.match(label, new RegExp(`^${wordsLabel}\\b.* \\d+%$`), "the card shows its top label and its probability");
  assert.match(await page.getAttribute(`${firstCard} .label-line`, "title"), new RegExp(wordsLabel));
  assert.match(await page.textContent("#words-note"), /dog \(\d+ classes\)/, "the words understood are shown");
  assert.ok(await page.isHidden("#error"), "no error should be shown");
  assert.equal(new URL(page.url()).hash, "#q=dog");
  assert.ok(await page.isHidden("#query-preview"), "a search by words has no query image");

  step("the viewer shows the result's labels");
  await page.click(`${firstCard} .open`);
  await page.waitForSelector("#player[open]", { timeout });
  await page.waitForSelector("#player-details:not([hidden]) #player-labels li", { timeout });
  assert.match(await page.textContent("#player-labels li:first-child"), new RegExp(`^${wordsLabel}\\b`));
  await page.click("#player-close");
  await page.waitForFunction(() => !document.querySelector("#player").open, null, { timeout });

  step('a word that names nothing ("xyzzy"): said so, no results, no error');
  await page.fill("#words", "xyzzy");
  await page.click("#words-form button[type=submit]");
  await page.waitForFunction(
    () => /No ImageNet class for: xyzzy/.test(document.querySelector("#words-note").textContent),
    null,
    { timeout },
  );
  assert.equal(await page.locator("#results .card").count(), 0, "no results");
  assert.ok(await page.isHidden("#error"), "no error banner");
  assert.ok(await page.isVisible("#empty"), "the empty state says why");
  step(`the page says: "${await page.textContent("#words-note")}" / "${await page.textContent("#empty")}"`);

  step(`the folder filter: ${basename(filterQuery)} finds only photos under ${filterFolder}`);
  await page.click("#filters > summary");
  await page.fill("#filter-under", filterFolder);
  await page.setInputFiles("#file", filterQuery);
  await page.waitForFunction(
    () => /results? in \d+ ms · filtered$/.test(document.querySelector("#summary").textContent),
    null,
    { timeout },
  );
  const underFolder = (paths) => paths.length > 0 && paths.every((p) => p.startsWith(`${filterFolder}/`));
  const shownPaths = () => page.$$eval("#results .card", (cards) => cards.map((c) => c.dataset.path));
  let paths = await shownPaths();
  assert.ok(underFolder(paths), `every result under ${filterFolder}: ${paths.join(", ")}`);
  assert.equal(await page.textContent("#filter-count"), "1", "the disclosure counts the filters");

  step("the filter narrows a similar click too");
  const similarTo = await page.$eval("#results .card:nth-child(2)", (card) => card.dataset.id);
  await page.click("#results .card:nth-child(2) .thumb");
  await page.waitForFunction(
    (id) => document.querySelector("#results .card:first-child")?.dataset.id === id,
    similarTo,
    { timeout },
  );
  paths = await shownPaths();
  assert.ok(underFolder(paths), `every result under ${filterFolder}: ${paths.join(", ")}`);
  assert.match(await page.textContent("#summary"), /· filtered$/);

  step("a bad date (taken=2019-13) shows the server's message next to the filters");
  const refusal = await (await fetch(`${baseUrl}/api/items/${similarTo}/similar?taken=2019-13`)).json();
  await page.fill("#filter-taken", "2019-13");
  await page.press("#filter-taken", "Enter");
  await page.waitForSelector("#filter-error:not([hidden])", { timeout });
  assert.equal(await page.textContent("#filter-error"), refusal.error.message);
  assert.equal(await page.getAttribute("#filter-taken", "aria-invalid"), "true");
  assert.ok(await page.isHidden("#error"), "the message is by the filters, not in the banner");
  step(`the filters say: "${refusal.error.message}"`);

  step("clearing the filters searches again, unfiltered");
  await page.click("#filter-clear");
  await page.waitForFunction(
    () => /results? in \d+ ms$/.test(document.querySelector("#summary").textContent),
    null,
    { timeout },
  );
  assert.ok(await page.isHidden("#filter-error"));
  assert.ok(await page.isHidden("#filter-count"));
  assert.ok((await shownPaths()).length > 0, "the unfiltered results are back");

  step("Duplicates: the view lists the groups, thumbnails side by side, the keeper marked");
  await page.click("#nav-duplicates");
  await page.waitForSelector("#duplicates-view:not([hidden])", { timeout });
  assert.ok(await page.isHidden("#search-view"), "the search view is hidden");
  assert.equal(new URL(page.url()).hash, "#duplicates");
  const groupWith = (name) =>
    page.locator(".dup-group").filter({ has: page.locator(".name", { hasText: exactly(name) }) });
  const near = groupWith(nearDuplicate);
  await near.waitFor({ timeout: scanTimeout });
  await page.waitForFunction(
    () => !document.querySelector("#duplicates-view").hasAttribute("aria-busy"),
    null,
    { timeout: scanTimeout },
  );
  assert.match(await page.textContent("#dup-summary"), /^\d+ groups? · \d+ images? could go \(/);
  const members = await near.locator(".dup-member").evaluateAll((nodes) =>
    nodes.map((node) => ({
      name: node.querySelector(".name").textContent,
      alt: node.querySelector("img").alt,
      keeper: !node.querySelector(".keeper-badge").hidden,
      facts: node.querySelector(".dup-facts").textContent,
      date: node.querySelector(".dup-date").textContent,
    })),
  );
  step(`the group of ${nearDuplicate}: ${members.map((m) => m.name).join(", ")}`);
  assert.ok(members.length >= 2, "a group shows two or more images");
  assert.equal(members[0].name, "astronaut.png", "the full-size original is the keeper");
  assert.deepEqual(members.map((m) => m.keeper), members.map((_, i) => i === 0), "one keeper badge, on the keeper");
  assert.ok(members.every((m) => m.alt === m.name), "each thumbnail is described by its file name");
  assert.match(members[0].facts, /^512×512 · [\d.]+ KB$/);
  assert.ok(members.every((m) => /^Modified \w+/.test(m.date)), "each says when it was modified");
  await near.scrollIntoViewIfNeeded(); // thumbnails load lazily, once in view
  await page.waitForFunction(
    (ids) => ids.split(",").every((id) => {
      const img = document.querySelector(`.dup-member[data-id="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }),
    await near.getAttribute("data-ids"),
    { timeout },
  );
  const side = await near.locator(".dup-member").evaluateAll((nodes) => nodes.map((n) => n.getBoundingClientRect().top));
  assert.equal(side[0], side[1], "the thumbnails are side by side");

  step('"Not duplicates" without the token says what is missing; with it, the group goes');
  await near.locator(".dup-distinct").click();
  await page.waitForSelector("#dup-error:not([hidden])", { timeout });
  assert.match(await page.textContent("#dup-error"), /token/);
  assert.equal(await near.count(), 1, "a refused request changes nothing");
  await page.fill("#token", token);
  await near.locator(".dup-distinct").click();
  await near.waitFor({ state: "detached", timeout });
  assert.match(await page.textContent("#dup-done"), /not duplicates/);
  await page.waitForFunction(
    () => !document.querySelector("#duplicates-view").hasAttribute("aria-busy"),
    null,
    { timeout },
  );
  assert.equal(await groupWith(nearDuplicate).count(), 0, "the server no longer groups them");
  assert.ok(await page.isHidden("#dup-error"));

  step("identical files: keep the newer copy, move the other into the index's moved folder");
  const identical = page.locator(".dup-group").filter({
    has: page.locator(".dup-folder", { hasText: exactly(dirname(identicalKept)) }),
  });
  assert.equal(await identical.count(), 1);
  assert.match(await identical.locator(".dup-group-title").textContent(), /^2 images · identical files$/);
  assert.ok(await identical.locator(".dup-distinct").isHidden(), "identical files cannot be 'not duplicates'");
  const keptMember = identical.locator(".dup-member").filter({
    has: page.locator(".dup-folder", { hasText: exactly(dirname(identicalKept)) }),
  });
  assert.equal(await keptMember.locator(".keep-this").getAttribute("aria-pressed"), "false",
    "the server keeps the older file");
  await keptMember.locator(".keep-this").click();
  assert.equal(await keptMember.locator(".keep-this").getAttribute("aria-pressed"), "true");
  assert.ok(await keptMember.locator(".keeper-badge").isVisible());
  assert.equal(await identical.locator(".keeper-badge:visible").count(), 1);
  page.once("dialog", (dialog) => dialog.accept());
  await identical.locator(".dup-move").click();
  await identical.waitFor({ state: "detached", timeout });
  assert.match(await page.textContent("#dup-done"), /^Moved 1 file\. Undo on the server: lookalike duplicates --undo /);
  assert.ok(existsSync(identicalKept), "the chosen keeper stays");
  assert.ok(!existsSync(identicalMoved), "the other file moved away");
  assert.ok(existsSync(join(db, "moved", identicalMoved)), "into DB/moved, at its path");

  await page.click("#nav-search");
  await page.waitForSelector("#search-view:not([hidden])", { timeout });
  assert.ok(await page.isHidden("#duplicates-view"));

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
