// lookalike's page: pick, drop or paste an image (or name one already on the server), show the
// most similar images; click one to search with it. A video result is the moment of the video
// that matched: its thumbnail is that frame, and "open" plays the video from there in an
// overlay. Plain DOM, no framework, no build step.
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
  const form = new FormData();
  form.append("image", file, file.name || "pasted-image");
  run(`/api/search?${searchParams()}`, { method: "POST", body: form });
}

function searchItem(id, { push = true } = {}) {
  closePlayer();
  lastQuery = { id };
  setPreview(`/api/items/${id}/thumbnail`);
  if (push && location.hash !== `#item=${id}`) history.pushState(null, "", `#item=${id}`);
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

function fromHash() {
  const match = location.hash.match(/^#item=(\d+)$/);
  if (match) searchItem(Number(match[1]), { push: false });
}

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

loadStats();
setInterval(loadStats, 30000);
fromHash();
