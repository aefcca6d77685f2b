// lookalike's page: pick, drop or paste an image (or name one already on the server), show the
// most similar images; click one to search with it. Or type words ("dog", "golden retriever"):
// the images whose ImageNet labels they name. Each result shows its most probable label; the
// filters (taken, camera, near, folder) narrow every search. A video result is the moment of
// the video that matched: its thumbnail is that frame, and "open" plays the video from there
// in an overlay; "open" on an image shows it there, with its labels and facts (EXIF). The
// Duplicates view (#duplicates) lists the groups of duplicate images, and tidies them up with
// the server's write token. Plain DOM, no framework, no build step.
"use strict";

const $ = (selector) => document.querySelector(selector);

const els = {
  dropzone: $("#dropzone"),
  file: $("#file"),
  preview: $("#query-preview"),
  form: $("#item-form"),
  itemRef: $("#item-ref"),
  k: $("#k"),
  verify: $("#verify"),
  wordsForm: $("#words-form"),
  words: $("#words"),
  suggestions: $("#words-suggestions"),
  wordsNote: $("#words-note"),
  filters: $("#filters"),
  filterForm: $("#filter-form"),
  filterCount: $("#filter-count"),
  filterError: $("#filter-error"),
  filterClear: $("#filter-clear"),
  error: $("#error"),
  summary: $("#summary"),
  results: $("#results"),
  empty: $("#empty"),
  stats: $("#stats"),
  template: $("#card-template"),
  player: $("#player"),
  playerVideo: $("#player-video"),
  playerImage: $("#player-image"),
  playerRegion: $("#player-region"),
  playerTitle: $("#player-title"),
  playerClose: $("#player-close"),
  playerDetails: $("#player-details"),
  playerFacts: $("#player-facts"),
  playerLabels: $("#player-labels"),
  searchView: $("#search-view"),
  navSearch: $("#nav-search"),
  navDuplicates: $("#nav-duplicates"),
  dupView: $("#duplicates-view"),
  dupRefresh: $("#dup-refresh"),
  dupError: $("#dup-error"),
  dupSummary: $("#dup-summary"),
  dupDone: $("#dup-done"),
  dupGroups: $("#dup-groups"),
  dupGroupTemplate: $("#dup-group-template"),
  dupMemberTemplate: $("#dup-member-template"),
  token: $("#token"),
};

// The query being shown: { file }, { id } or { words }; a counter drops answers that arrive
// late.
let lastQuery = null;
let generation = 0;
let previewUrl = null;

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through to the status text
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.code = body && body.error ? body.error.code : null;
    throw error;
  }
  return body;
}

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = false;
}

function clearError() {
  els.error.hidden = true;
  els.error.textContent = "";
  clearFilterError();
}

function setPreview(src) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = src.startsWith("blob:") ? src : null;
  els.preview.src = src;
  els.preview.hidden = false;
  els.dropzone.classList.add("has-query");
  $(".dropzone-title").textContent = "Drop another photo";
}

// A search by words has no query image: the drop area is as it was at first.
function clearPreview() {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  els.preview.hidden = true;
  els.preview.removeAttribute("src");
  els.dropzone.classList.remove("has-query");
  $(".dropzone-title").textContent = "Drop a photo here";
}

function k() {
  return Number(els.k.value) || 24;
}

// The API verifies at most 50 results per search; a result counts as the same object or scene
// from 18 inliers (see the `verify` parameter in /api/openapi.json).
const MAX_VERIFY = 50;
const MIN_INLIERS = 18;

// ---- Filters ----

// The filter fields, by the query parameter each sets; every search carries the filled ones.
const FILTERS = {
  taken: $("#filter-taken"),
  camera: $("#filter-camera"),
  near: $("#filter-near"),
  under: $("#filter-under"),
  min_score: $("#filter-min-score"),
};
// The API's codes for a bad filter value, and the field at fault.
const FILTER_ERRORS = {
  invalid_taken: "taken",
  invalid_near: "near",
  invalid_min_score: "min_score",
};

// [parameter, value] of the filled filter fields.
function activeFilters() {
  return Object.entries(FILTERS)
    .map(([param, input]) => [param, input.value.trim()])
    .filter(([, value]) => value !== "");
}

function filterQuery() {
  return activeFilters().map(([param, value]) => `&${param}=${encodeURIComponent(value)}`).join("");
}

function showFilterCount() {
  const n = activeFilters().length;
  els.filterCount.textContent = n > 0 ? String(n) : "";
  els.filterCount.hidden = n === 0;
  els.filterCount.title = n > 0 ? count(n, "filter applies", "filters apply") : "";
}

// A 400 about a filter value: said next to the filters (open), the field marked.
function showFilterError(message, param) {
  els.filters.open = true;
  els.filterError.textContent = message;
  els.filterError.hidden = false;
  const input = FILTERS[param];
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearFilterError() {
  els.filterError.hidden = true;
  els.filterError.textContent = "";
  for (const input of Object.values(FILTERS)) input.removeAttribute("aria-invalid");
}

// The query string of a search: k, the filters, and for an image the depth of spatial
// verification when asked for.
function searchParams({ image = true } = {}) {
  const verify = image && els.verify.checked ? `&verify=${Math.min(k(), MAX_VERIFY)}` : "";
  return `k=${k()}${verify}${filterQuery()}`;
}

// The filters the shown results went through (to search again when they change).
let appliedFilters = "";

async function run(url, options) {
  const mine = ++generation;
  const query = lastQuery;
  appliedFilters = filterQuery();
  showFilterCount();
  clearError();
  document.body.classList.add("busy");
  try {
    const answer = await api(url, options);
    if (mine === generation) render(answer, query);
  } catch (err) {
    if (mine !== generation) return;
    const param = FILTER_ERRORS[err.code];
    if (param) {
      // The results shown were not filtered so: they go.
      showFilterError(err.message, param);
      els.results.replaceChildren();
      els.summary.textContent = "";
      els.empty.hidden = true;
    } else {
      showError(err.message || String(err));
    }
  } finally {
    if (mine === generation) document.body.classList.remove("busy");
  }
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`"${file.name}" is not an image.`);
    return;
  }
  lastQuery = { file };
  showWordsNote(null);
  setPreview(URL.createObjectURL(file));
  if (location.hash) history.pushState(null, "", location.pathname);
  routed = location.hash;
  const form = new FormData();
  form.append("image", file, file.name || "pasted-image");
  run(`/api/search?${searchParams()}`, { method: "POST", body: form });
}

function searchItem(id, { push = true } = {}) {
  closePlayer();
  lastQuery = { id };
  showWordsNote(null);
  setPreview(`/api/items/${id}/thumbnail`);
  if (push && location.hash !== `#item=${id}`) history.pushState(null, "", `#item=${id}`);
  routed = location.hash;
  showView("search");
  run(`/api/items/${id}/similar?${searchParams()}`);
}

// ---- Words ----

// The location of a search by words: #q=WORDS.
function wordsHash(words) {
  return `#q=${encodeURIComponent(words)}`;
}

function searchWords(text, { push = true } = {}) {
  const words = text.trim();
  if (!words) {
    els.words.focus();
    return;
  }
  closePlayer();
  lastQuery = { words };
  clearPreview();
  showWordsNote(null);
  if (push && location.hash !== wordsHash(words)) history.pushState(null, "", wordsHash(words));
  routed = location.hash;
  showView("search");
  run(`/api/search?q=${encodeURIComponent(words)}&${searchParams({ image: false })}`);
}

// What the server made of the words: the ones it understood, with the number of ImageNet
// classes each names, and those that name none. Nothing for a search by image.
function showWordsNote(answer) {
  const parts = [];
  const known = answer?.words || [];
  const unknown = answer?.unknown_words || [];
  if (known.length > 0) {
    const list = known.map((w) => `${w.word} (${count(w.classes, "class", "classes")})`).join(", ");
    parts.push(`Searched for ${list}.`);
  }
  if (unknown.length > 0) parts.push(`No ImageNet class for: ${unknown.join(", ")}.`);
  els.wordsNote.textContent = parts.join(" ");
  els.wordsNote.classList.toggle("unknown", unknown.length > 0);
}

// Suggestions from the vocabulary as one types, for the word being typed: the text after the
// last comma, else (when that names nothing) its last word. Asked 150 ms after the last
// keystroke; an answer that comes after more typing is dropped.
const SUGGEST_DELAY_MS = 150;
let suggestTimer = 0;
let suggestAbort = null;

async function suggestionsFor(text) {
  const cut = text.lastIndexOf(",") + 1;
  let head = text.slice(0, cut);
  let word = text.slice(cut);
  const lead = word.match(/^\s*/)[0];
  head += lead;
  word = word.slice(lead.length);
  if (word.trim().length === 0) return [];
  const ask = async (prefix) => {
    suggestAbort = new AbortController();
    const url = `/api/words?prefix=${encodeURIComponent(prefix)}&limit=10`;
    return api(url, { signal: suggestAbort.signal });
  };
  let found = await ask(word);
  const space = word.trimEnd().lastIndexOf(" ");
  if (found.length === 0 && space > 0) {
    head += word.slice(0, space + 1);
    found = await ask(word.slice(space + 1));
  }
  return found.map((s) => ({ value: head + s.word, classes: s.classes }));
}

function scheduleSuggestions() {
  clearTimeout(suggestTimer);
  suggestAbort?.abort();
  const text = els.words.value;
  suggestTimer = setTimeout(async () => {
    let found;
    try {
      found = await suggestionsFor(text);
    } catch {
      return; // aborted by more typing, or the server is away: no suggestions
    }
    if (els.words.value !== text) return;
    els.suggestions.replaceChildren(...found.map(({ value, classes }) => {
      const option = document.createElement("option");
      option.value = value;
      option.label = count(classes, "class", "classes");
      return option;
    }));
  }, SUGGEST_DELAY_MS);
}

// An id, or a URL of this server's /api/items/{id}/... (the page never fetches other sites).
function parseItemRef(text) {
  const value = text.trim();
  if (/^\d+$/.test(value)) return Number(value);
  let url;
  try {
    url = new URL(value, location.href);
  } catch {
    return null;
  }
  if (url.origin !== location.origin) return null;
  const match = url.pathname.match(/^\/api\/items\/(\d+)(\/|$)/) || url.hash.match(/^#item=(\d+)$/);
  return match ? Number(match[1]) : null;
}

// Seconds as m:ss (h:mm:ss from an hour on), the way video players show a position.
function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// Outlines `box` (fractions of the picture's width and height) on `outline`, a sibling of
// `media` (an img or video shown with object-fit: contain, filling their positioned parent).
function placeRegion(outline, media, box, naturalWidth, naturalHeight) {
  if (!box || !naturalWidth || !naturalHeight) {
    outline.hidden = true;
    return;
  }
  const width = media.clientWidth;
  const height = media.clientHeight;
  const scale = Math.min(width / naturalWidth, height / naturalHeight);
  const shownWidth = naturalWidth * scale;
  const shownHeight = naturalHeight * scale;
  const left = (width - shownWidth) / 2;
  const top = (height - shownHeight) / 2;
  // In percent of the media's box, which fills the parent: a thumbnail's square stays right
  // at any width.
  const pct = (value, of) => `${(100 * value) / of}%`;
  outline.style.left = pct(left + box.x * shownWidth, width);
  outline.style.top = pct(top + box.y * shownHeight, height);
  outline.style.width = pct(box.w * shownWidth, width);
  outline.style.height = pct(box.h * shownHeight, height);
  outline.hidden = false;
}

// The result shown in the viewer, to outline its box again when the window resizes.
let viewing = null;

function placeViewerRegion() {
  if (!viewing || !els.player.open) return;
  const { result, media } = viewing;
  const [w, h] = media === els.playerVideo
    ? [media.videoWidth, media.videoHeight]
    : [media.naturalWidth, media.naturalHeight];
  placeRegion(els.playerRegion, media, result.box, w, h);
}

window.addEventListener("resize", placeViewerRegion);

function openViewer(result, media) {
  viewing = { result, media };
  els.playerRegion.hidden = true;
  els.playerVideo.hidden = media !== els.playerVideo;
  els.playerImage.hidden = media !== els.playerImage;
  els.playerTitle.href = result.original;
  els.playerDetails.hidden = true;
  loadDetails(viewing);
  if (!els.player.open) els.player.showModal();
}

// "14 Jun 2020, 16:03" from the EXIF time "2020-06-14T16:03:00" (the camera's local time).
function takenText(taken) {
  const date = new Date(taken);
  if (Number.isNaN(date.getTime())) return taken;
  const timed = !/T00:00(:00)?$/.test(taken);
  return date.toLocaleString(undefined, timed
    ? { dateStyle: "medium", timeStyle: "short" }
    : { dateStyle: "medium" });
}

// The facts (EXIF) and labels of the item in the viewer, under the picture, when it has any.
async function loadDetails(shown) {
  let item;
  try {
    item = await api(`/api/items/${shown.result.id}`);
  } catch {
    return; // the details are extras: the picture is still shown
  }
  if (viewing !== shown) return;
  const facts = item.facts || {};
  const rows = [];
  if (facts.taken) rows.push(["Taken", takenText(facts.taken)]);
  if (item.camera) rows.push(["Camera", item.camera]);
  if (facts.latitude != null && facts.longitude != null) {
    const lat = facts.latitude.toFixed(5);
    const lon = facts.longitude.toFixed(5);
    const link = document.createElement("a");
    link.href = `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=15/${lat}/${lon}`;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = `${lat}, ${lon}`;
    link.title = "Show the place on OpenStreetMap";
    rows.push(["Position", link]);
  }
  els.playerFacts.replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.append(value);
    return [dt, dd];
  }));
  const labels = item.labels || [];
  els.playerLabels.replaceChildren(...labels.map((label) => {
    const li = document.createElement("li");
    li.textContent = labelText(label);
    li.title = label.name;
    return li;
  }));
  els.playerFacts.hidden = rows.length === 0;
  els.playerLabels.hidden = labels.length === 0;
  els.playerDetails.hidden = rows.length === 0 && labels.length === 0;
}

// Shows an image result whole, with the region the query was found in outlined.
function view(result) {
  els.playerTitle.textContent = result.name;
  els.playerTitle.title = result.path;
  openViewer(result, els.playerImage);
  els.playerImage.addEventListener("load", placeViewerRegion, { once: true });
  els.playerImage.src = result.original;
  els.playerImage.alt = result.name;
}

// Plays a video result from its moment. The media fragment (#t=) starts the download there;
// setting currentTime once the metadata is in covers browsers that ignore fragments.
function play(result) {
  const video = els.playerVideo;
  const t = result.t || 0;
  els.playerTitle.textContent = `${result.name} · ${clock(t)}`;
  els.playerTitle.title = result.path;
  openViewer(result, video);
  video.addEventListener(
    "loadedmetadata",
    () => {
      if (Math.abs(video.currentTime - t) > 0.25) video.currentTime = t;
      placeViewerRegion();
    },
    { once: true },
  );
  video.src = `${result.original}#t=${t.toFixed(3)}`;
  video.play().catch(() => {
    // Autoplay refused or the format is not playable here: the controls are still there.
  });
}

function closePlayer() {
  if (els.player.open) els.player.close();
}

// Closing stops the video and its download.
els.player.addEventListener("close", () => {
  viewing = null;
  els.playerVideo.pause();
  els.playerVideo.removeAttribute("src");
  els.playerVideo.load();
  els.playerImage.removeAttribute("src");
});
els.playerClose.addEventListener("click", closePlayer);
els.player.addEventListener("click", (event) => {
  if (event.target === els.player) closePlayer(); // a click on the backdrop
});

// "Pekinese 90%": a label's first name and its probability.
function labelText(label) {
  const percent = Math.round(label.probability * 100);
  return `${label.name.split(", ")[0]} ${percent < 1 ? "<1" : percent}%`;
}

// Every name of the labels, one label a line.
function labelsTitle(labels) {
  return labels.map((l) => `${l.name}: ${Math.round(l.probability * 1000) / 10}%`).join("\n");
}

function render(answer, query) {
  const results = answer.results || [];
  els.results.replaceChildren(...results.map(card));
  els.empty.hidden = results.length > 0;
  const filtered = activeFilters().some(([param]) => param !== "min_score");
  if (query?.words != null) showWordsNote(answer);
  if (results.length === 0) els.empty.textContent = emptyText(answer, query, filtered);
  const noun = results.length === 1 ? "result" : "results";
  const narrowed = filtered ? " · filtered" : "";
  els.summary.textContent = `${results.length} ${noun} in ${Math.round(answer.took_ms)} ms${narrowed}`;
}

// Why a search found nothing (not an error).
function emptyText(answer, query, filtered) {
  const among = filtered ? " among the photos the filters let through" : "";
  if (query?.words != null) {
    if (answer.unknown_words?.length) {
      return "Nothing found: every word must name an ImageNet class (try another word, or a broader one).";
    }
    const words = (answer.words || []).map((w) => `“${w.word}”`);
    const all = words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
    return `No photo was labelled ${all || "so"}${among}.`;
  }
  if (filtered) return "No image matches the filters.";
  return "The collection is empty: nothing to compare with yet.";
}

function card(result) {
  const node = els.template.content.firstElementChild.cloneNode(true);
  node.dataset.id = result.id;
  node.dataset.path = result.path;
  const img = node.querySelector("img");
  img.src = result.thumbnail;
  img.alt = result.name;
  img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  if (result.box) {
    node.classList.add("located");
    const outline = node.querySelector(".region");
    img.addEventListener(
      "load",
      () => placeRegion(outline, img, result.box, img.naturalWidth, img.naturalHeight),
      { once: true },
    );
  }
  const score = node.querySelector(".score");
  score.textContent = result.score.toFixed(3);
  if (result.inliers >= MIN_INLIERS) {
    node.classList.add("verified");
    score.textContent += ` · ${result.inliers} matches`;
    score.title = "Local features matched with the query in a consistent arrangement";
  }
  const name = node.querySelector(".name");
  name.textContent = result.name;
  name.title = result.path;
  const open = node.querySelector(".open");
  open.href = result.original;
  if (result.video) {
    node.classList.add("video");
    node.dataset.t = result.t ?? 0;
    const moment = node.querySelector(".moment");
    moment.querySelector(".moment-time").textContent = clock(result.t || 0);
    moment.hidden = false;
    name.title = `${result.path} at ${clock(result.t || 0)}`;
    open.title = "Play the video from here";
    open.addEventListener("click", (event) => {
      event.preventDefault();
      play(result);
    });
  } else {
    open.title = result.box
      ? "Show where the query was found"
      : "Show the image with its labels and facts (Ctrl+click: the original)";
    open.addEventListener("click", (event) => {
      // A click with a modifier opens the original, as a link does.
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      view(result);
    });
  }
  const labels = result.labels || [];
  const labelLine = node.querySelector(".label-line");
  if (labels.length > 0) {
    labelLine.textContent = labelText(labels[0]);
    labelLine.title = labelsTitle(labels);
  }
  node.querySelector(".thumb").addEventListener("click", () => {
    searchItem(result.id);
    window.scrollTo({ top: 0, behavior: "smooth" });
  });
  return node;
}

async function loadStats() {
  try {
    const stats = await api("/api/stats");
    const n = (count, one, many) =>
      `${new Intl.NumberFormat().format(count)} ${count === 1 ? one : many}`;
    const videos = stats.videos > 0 ? ` · ${n(stats.videos, "video", "videos")}` : "";
    els.stats.textContent = `${n(stats.images, "image", "images")}${videos} · ${stats.model}`;
    if (!lastQuery) {
      els.empty.textContent = stats.items > 0
        ? `Drop a photo to find its lookalikes among ${n(stats.files, "file", "files")}, or search by words.`
        : "The collection is empty: index some photos first.";
    }
  } catch {
    els.stats.textContent = "stats unavailable";
  }
}

// The hash last acted on: going back and forth fires popstate and hashchange, once each.
let routed = null;

// #duplicates shows the Duplicates view; #item=ID searches by an item; #q=WORDS by words;
// anything else is the search view as it was.
function fromHash() {
  if (location.hash === routed) return;
  routed = location.hash;
  if (location.hash === "#duplicates") {
    showView("duplicates");
    loadDuplicates();
    return;
  }
  showView("search");
  const match = location.hash.match(/^#item=(\d+)$/);
  if (match) {
    searchItem(Number(match[1]), { push: false });
    return;
  }
  const words = location.hash.match(/^#q=(.+)$/);
  if (words) {
    let text;
    try {
      text = decodeURIComponent(words[1]);
    } catch {
      return;
    }
    els.words.value = text;
    searchWords(text, { push: false });
  }
}

function showView(name) {
  const duplicates = name === "duplicates";
  els.dupView.hidden = !duplicates;
  els.searchView.hidden = duplicates;
  for (const [link, current] of [[els.navSearch, !duplicates], [els.navDuplicates, duplicates]]) {
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = duplicates ? "Duplicates · lookalike" : "lookalike";
}

// ---- Duplicates ----

// The groups shown, each with the keeper chosen on the page (the server's by default).
let dupGroups = [];
let dupGeneration = 0;
// Whether the server answered without scanning (it has no token, so it writes nothing).
let readOnly = false;
const TOKEN_KEY = "lookalike-token";

function showDupError(message) {
  els.dupError.textContent = message;
  els.dupError.hidden = false;
}

function bytesText(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} KB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function dateText(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleDateString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
  });
}

function folderOf(path) {
  const cut = path.lastIndexOf("/");
  return cut > 0 ? path.slice(0, cut) : "/";
}

const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// The members a group drops: all but the chosen keeper and the reference files.
function dropped(group) {
  return group.members.filter((m) => m.id !== group.keeper && !m.reference);
}

// Asks the server (which first scans the images added since its last scan). Keepers chosen on
// the page stay chosen in the groups that still hold them.
async function loadDuplicates() {
  const mine = ++dupGeneration;
  els.dupError.hidden = true;
  els.dupView.setAttribute("aria-busy", "true");
  els.dupSummary.textContent = "Looking for duplicates… (the first time, every image is compared with its neighbours)";
  try {
    const answer = await api("/api/duplicates");
    if (mine !== dupGeneration) return;
    const chosen = new Map(dupGroups.flatMap((g) => g.members.map((m) => [m.id, g.keeper])));
    dupGroups = answer.groups.map((group) => {
      const keeper = chosen.get(group.members[0].id);
      const stays = group.members.some((m) => m.id === keeper);
      return { ...group, keeper: stays ? keeper : group.members[0].id };
    });
    els.dupGroups.replaceChildren(...dupGroups.map(groupNode));
    readOnly = answer.scan === null;
    renderSummary();
  } catch (err) {
    if (mine === dupGeneration) {
      els.dupSummary.textContent = "";
      showDupError(err.message || String(err));
    }
  } finally {
    if (mine === dupGeneration) els.dupView.removeAttribute("aria-busy");
  }
}

function renderSummary() {
  // A read-only server does not look for new near duplicates itself.
  const stale = readOnly
    ? " This server is read-only: it shows identical files, and the near duplicates that “lookalike duplicates” found."
    : "";
  if (dupGroups.length === 0) {
    els.dupSummary.textContent = `No duplicates found.${stale}`;
    return;
  }
  const droppable = dupGroups.flatMap(dropped);
  const bytes = droppable.reduce((sum, m) => sum + m.bytes, 0);
  els.dupSummary.textContent = `${count(dupGroups.length, "group", "groups")} · `
    + `${count(droppable.length, "image", "images")} could go (${bytesText(bytes)}).${stale}`;
}

function groupNode(group) {
  const node = els.dupGroupTemplate.content.firstElementChild.cloneNode(true);
  node.dataset.ids = group.members.map((m) => m.id).join(",");
  const identical = group.tier === "exact";
  const title = `${group.members.length} images · ${identical ? "identical files" : "the same photo"}`;
  node.querySelector(".dup-group-title").textContent = title;
  node.setAttribute("aria-label", title);
  const members = node.querySelector(".dup-members");
  const choose = (id) => {
    group.keeper = id;
    members.replaceChildren(...group.members.map((m) => memberNode(group, m, choose)));
    renderSummary();
  };
  choose(group.keeper);
  const distinct = node.querySelector(".dup-distinct");
  if (identical) {
    // The same bytes are one file: there is no decision to record.
    distinct.hidden = true;
  } else {
    distinct.title = "These are different photos: keep them all and stop grouping them";
    distinct.addEventListener("click", () => notDuplicates(group, node));
  }
  node.querySelector(".dup-move").title = "Move all but the keeper into the server's “moved” folder";
  node.querySelector(".dup-move").addEventListener("click", () => tidy(group, node, "move"));
  node.querySelector(".dup-delete").title = "Move all but the keeper into the server's trash";
  node.querySelector(".dup-delete").addEventListener("click", () => tidy(group, node, "delete"));
  return node;
}

// One image of a group; `choose(id)` makes another the keeper.
function memberNode(group, member, choose) {
  const node = els.dupMemberTemplate.content.firstElementChild.cloneNode(true);
  const keeper = member.id === group.keeper;
  node.dataset.id = member.id;
  node.classList.toggle("keeper", keeper);
  node.querySelector(".dup-thumb").href = member.original;
  const img = node.querySelector("img");
  img.src = member.thumbnail;
  img.alt = member.name;
  img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  node.querySelector(".keeper-badge").hidden = !keeper;
  const name = node.querySelector(".name");
  name.textContent = member.name;
  name.title = member.path;
  const reference = member.reference ? " · reference" : "";
  node.querySelector(".dup-facts").textContent =
    `${member.width}×${member.height} · ${bytesText(member.bytes)}${reference}`;
  node.querySelector(".dup-date").textContent = `Modified ${dateText(member.modified)}`;
  const folder = node.querySelector(".dup-folder");
  folder.textContent = folderOf(member.path);
  folder.title = member.path;
  const keep = node.querySelector(".keep-this");
  keep.textContent = keeper ? "Kept" : "Keep this";
  keep.setAttribute("aria-pressed", String(keeper));
  keep.setAttribute("aria-label", `Keep ${member.name}`);
  keep.addEventListener("click", () => {
    if (keeper) return;
    const list = node.parentElement;
    choose(member.id);
    list.querySelector(`[data-id="${member.id}"] .keep-this`).focus();
  });
  return node;
}

// A write: JSON POSTed with the token. A refusal for want of the token says where it goes.
async function write(url, body) {
  const headers = { "Content-Type": "application/json" };
  const token = els.token.value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await api(url, { method: "POST", headers, body: JSON.stringify(body) });
  } catch (err) {
    if (!/bearer token/.test(err.message)) throw err;
    els.token.focus();
    throw new Error(`${err.message}: enter the server's token in “Write token” above.`);
  }
}

// Runs a group's action with its buttons disabled; false (and the error shown) if it failed.
async function busyWith(node, work) {
  els.dupError.hidden = true;
  const buttons = [...node.querySelectorAll(".dup-actions button")];
  buttons.forEach((b) => { b.disabled = true; });
  node.setAttribute("aria-busy", "true");
  try {
    await work();
    return true;
  } catch (err) {
    showDupError(err.message || String(err));
    return false;
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    node.removeAttribute("aria-busy");
  }
}

function removeGroup(group, node) {
  dupGroups = dupGroups.filter((g) => g !== group);
  node.remove();
  renderSummary();
}

async function notDuplicates(group, node) {
  const ids = group.members.map((m) => m.id);
  if (!(await busyWith(node, () => write("/api/duplicates/distinct", { ids })))) return;
  removeGroup(group, node);
  els.dupDone.textContent = `Recorded: the ${ids.length} images are not duplicates.`;
  // Identical files among them stay grouped: show what the server sees now.
  loadDuplicates();
}

async function tidy(group, node, action) {
  const files = dropped(group);
  if (files.length === 0) return;
  const keeper = group.members.find((m) => m.id === group.keeper);
  const [verb, did, where] = action === "move"
    ? ["Move", "Moved", "into the server's “moved” folder"]
    : ["Delete", "Deleted", "into the server's trash"];
  if (!window.confirm(`${verb} ${count(files.length, "file", "files")} ${where}, keeping ${keeper.name}?`)) return;
  let outcome;
  const body = { keeper: group.keeper, drop: files.map((m) => m.id), action };
  const ok = await busyWith(node, async () => {
    outcome = await write("/api/duplicates/apply", body);
  });
  if (!ok) return;
  const skipped = outcome.skipped.map((s) => ` Skipped ${s.path}: ${s.reason}.`).join("");
  els.dupDone.textContent = `${did} ${count(outcome.done.length, "file", "files")}.${skipped}`
    + ` Undo on the server: lookalike duplicates --undo ${outcome.journal}`;
  removeGroup(group, node);
  loadDuplicates();
}

els.token.value = sessionStorage.getItem(TOKEN_KEY) || "";
els.token.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, els.token.value.trim()));
els.dupRefresh.addEventListener("click", loadDuplicates);

// Choosing a file.
els.dropzone.addEventListener("click", () => els.file.click());
els.dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    els.file.click();
  }
});
els.file.addEventListener("change", () => {
  searchFile(els.file.files[0]);
  els.file.value = "";
});

// Drag and drop anywhere on the page.
let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  els.dropzone.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) els.dropzone.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  els.dropzone.classList.remove("dragging");
  const file = [...(event.dataTransfer?.files || [])][0];
  if (file) searchFile(file);
});

// Pasting an image (text pastes into the id field are left alone).
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData?.items || [])].find(
    (entry) => entry.kind === "file" && entry.type.startsWith("image/"),
  );
  if (item) {
    event.preventDefault();
    searchFile(item.getAsFile());
  }
});

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = parseItemRef(els.itemRef.value);
  if (id === null) {
    showError("Enter an item id or a link to an image on this server (/api/items/ID/...).");
    return;
  }
  searchItem(id);
});

function searchAgain() {
  if (lastQuery?.file) searchFile(lastQuery.file);
  else if (lastQuery?.id != null) searchItem(lastQuery.id, { push: false });
  else if (lastQuery?.words != null) searchWords(lastQuery.words, { push: false });
}
els.k.addEventListener("change", searchAgain);
els.verify.addEventListener("change", searchAgain);

// Words: suggestions as one types; Enter or "Find" searches.
els.words.addEventListener("input", scheduleSuggestions);
els.wordsForm.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(suggestTimer);
  suggestAbort?.abort();
  searchWords(els.words.value);
});

// Filters: a changed one (Enter, leaving the field, "Apply") searches again, once.
function applyFilters() {
  showFilterCount();
  if (filterQuery() !== appliedFilters) searchAgain();
}
els.filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters();
});
els.filterForm.addEventListener("change", applyFilters);
els.filterForm.addEventListener("input", showFilterCount);
els.filterClear.addEventListener("click", () => {
  for (const input of Object.values(FILTERS)) input.value = "";
  clearFilterError();
  applyFilters();
});

window.addEventListener("popstate", fromHash);
window.addEventListener("hashchange", fromHash);

showFilterCount();
loadStats();
setInterval(loadStats, 30000);
fromHash();
