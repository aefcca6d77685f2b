// lookalike's page: pick, drop or paste an image (or name one already on the server), show the
// most similar images; click one to search with it. A video result is the moment of the video
// that matched: its thumbnail is that frame, and "open" plays the video from there in an
// overlay. The Duplicates view (#duplicates) lists the groups of duplicate images, and tidies
// them up with the server's write token. Plain DOM, no framework, no build step.
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

// The query being shown: { file } or { id }; a counter drops answers that arrive late.
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
    throw new Error(message);
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
}

function setPreview(src) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = src.startsWith("blob:") ? src : null;
  els.preview.src = src;
  els.preview.hidden = false;
  els.dropzone.classList.add("has-query");
  $(".dropzone-title").textContent = "Drop another photo";
}

function k() {
  return Number(els.k.value) || 24;
}

// The API verifies at most 50 results per search; a result counts as the same object or scene
// from 18 inliers (see the `verify` parameter in /api/openapi.json).
const MAX_VERIFY = 50;
const MIN_INLIERS = 18;

// The query string of a search: k, and the depth of spatial verification when asked for.
function searchParams() {
  const verify = els.verify.checked ? `&verify=${Math.min(k(), MAX_VERIFY)}` : "";
  return `k=${k()}${verify}`;
}

async function run(url, options) {
  const mine = ++generation;
  clearError();
  document.body.classList.add("busy");
  try {
    const answer = await api(url, options);
    if (mine === generation) render(answer);
  } catch (err) {
    if (mine === generation) showError(err.message || String(err));
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
  setPreview(`/api/items/${id}/thumbnail`);
  if (push && location.hash !== `#item=${id}`) history.pushState(null, "", `#item=${id}`);
  routed = location.hash;
  showView("search");
  run(`/api/items/${id}/similar?${searchParams()}`);
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
  if (!els.player.open) els.player.showModal();
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

function render(answer) {
  const results = answer.results || [];
  els.results.replaceChildren(...results.map(card));
  els.empty.hidden = results.length > 0;
  if (results.length === 0) els.empty.textContent = "The collection is empty: nothing to compare with yet.";
  const noun = results.length === 1 ? "result" : "results";
  els.summary.textContent = `${results.length} ${noun} in ${Math.round(answer.took_ms)} ms`;
}

function card(result) {
  const node = els.template.content.firstElementChild.cloneNode(true);
  node.dataset.id = result.id;
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
  } else if (result.box) {
    open.title = "Show where the query was found";
    open.addEventListener("click", (event) => {
      event.preventDefault();
      view(result);
    });
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
        ? `Drop a photo to find its lookalikes among ${n(stats.files, "file", "files")}.`
        : "The collection is empty: index some photos first.";
    }
  } catch {
    els.stats.textContent = "stats unavailable";
  }
}

// The hash last acted on: going back and forth fires popstate and hashchange, once each.
let routed = null;

// #duplicates shows the Duplicates view; #item=ID searches by an item; anything else is the
// search view as it was.
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
  if (match) searchItem(Number(match[1]), { push: false });
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
}
els.k.addEventListener("change", searchAgain);
els.verify.addEventListener("change", searchAgain);

window.addEventListener("popstate", fromHash);
window.addEventListener("hashchange", fromHash);

loadStats();
setInterval(loadStats, 30000);
fromHash();
