// The rag-platform search page: plain JavaScript against the API's own routes, no dependencies.
"use strict";

const KEY_STORAGE = "rag-platform-api-key";
const $ = (id) => document.getElementById(id);
let pending = null; // the request that waits for an API key, retried once one is entered
let generation = 0; // answers of an older query never overwrite a newer one
let lastFocus = null;

class NeedsKey extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) throw new NeedsKey(key ? "That key was not accepted." : "");
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${response.status}`);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function status(text) {
  $("status").textContent = text;
}

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-message").textContent = message;
  $("api-key").focus();
}

function renderResults(data) {
  const list = $("results");
  list.replaceChildren();
  $("results-meta").textContent =
    `${data.results.length} results · index version ${data.index_version} · ${data.took_ms.toFixed(1)} ms`;
  for (const hit of data.results) {
    const snippet = hit.text.replace(/\s+/g, " ").slice(0, 320);
    list.append(
      el(
        "li",
        { class: "result", "data-chunk-id": hit.chunk_id },
        el("h3", {}, el("button", { type: "button", class: "link title", onclick: () => openDetail(hit) }, hit.title)),
        el("p", { class: "source" }, hit.source),
        el("p", { class: "snippet" }, snippet + (hit.text.length > 320 ? "…" : "")),
        el("p", { class: "meta" }, `score ${hit.score.toFixed(4)} · index version ${hit.index_version}`),
      ),
    );
  }
  $("results-section").hidden = false;
}

function renderAnswer(data) {
  const text = $("answer-text");
  const citations = new Map(data.citations.map((c) => [c.n, c]));
  text.replaceChildren();
  if (data.abstained) {
    text.append(el("em", { class: "abstained" }, `No answer: ${data.reason}`));
  } else {
    // Each [n] marker becomes a link to its citation; the rest stays text (never parsed as HTML).
    let last = 0;
    for (const match of data.answer.matchAll(/\[(\d+)\]/g)) {
      text.append(data.answer.slice(last, match.index));
      const citation = citations.get(Number(match[1]));
      text.append(
        el("a", { href: `#cite-${match[1]}`, class: "marker", onclick: (e) => { e.preventDefault(); openDetail(citation, citation.quote); } },
          match[0]),
      );
      last = match.index + match[0].length;
    }
    text.append(data.answer.slice(last));
  }
  const list = $("citations");
  list.replaceChildren();
  for (const c of data.citations) {
    list.append(
      el(
        "li",
        { id: `cite-${c.n}`, value: String(c.n) },
        el("blockquote", {}, c.quote),
        el("button", { type: "button", class: "link", onclick: () => openDetail(c, c.quote) }, `${c.title} — document and lineage`),
        el("p", { class: "source" }, `${c.source} · chunk ${c.chunk_id} · version ${c.document_version.slice(0, 12)}`),
      ),
    );
  }
  const g = data.generator;
  $("answer-meta").textContent =
    `${g.provider} (${g.model})${g.fallback_reason ? ` after fallback: ${g.fallback_reason}` : ""} · index version ${data.index_version} · ${data.took_ms.toFixed(1)} ms`;
  $("answer").hidden = false;
}

function fields(record, names) {
  const list = el("dl");
  for (const name of names) {
    if (record[name] === undefined || record[name] === null) continue;
    const value = typeof record[name] === "object" ? JSON.stringify(record[name]) : String(record[name]);
    list.append(el("dt", {}, name), el("dd", {}, value));
  }
  return list;
}

async function openDetail(item, quote) {
  lastFocus = document.activeElement;
  const panel = $("detail");
  const body = $("detail-body");
  $("detail-heading").textContent = item.title;
  body.replaceChildren(el("p", {}, "Loading…"));
  panel.hidden = false;
  panel.focus();
  try {
    const [documentRecord, chunk] = await Promise.all([
      api("GET", `/documents/${encodeURIComponent(item.document_id)}`),
      api("GET", `/chunks/${encodeURIComponent(item.chunk_id)}/lineage`),
    ]);
    const history = el("ol", { class: "history" });
    for (const event of documentRecord.history || []) {
      history.append(el("li", {}, `${event.event} · ${event.at} · version ${String(event.document_version).slice(0, 12)} · run ${event.run_id}`));
    }
    body.replaceChildren(
      ...(quote ? [el("h3", {}, "Quoted"), el("blockquote", {}, quote)] : []),
      el("h3", {}, "Document"),
      fields(documentRecord, ["id", "source", "document_version", "run_id", "index_version"]),
      el("h3", {}, "Chunk lineage"),
      fields(chunk, ["id", "kind", "document_version", "run_id", "runs", "chunker", "embedding_model", "index_version"]),
      el("h3", {}, "History"),
      history,
    );
  } catch (error) {
    if (error instanceof NeedsKey) {
      pending = () => openDetail(item, quote);
      askForKey(error.message);
    } else body.replaceChildren(el("p", { role: "alert" }, String(error.message)));
  }
}

function closeDetail() {
  $("detail").hidden = true;
  if (lastFocus) lastFocus.focus();
}

async function run(query, mode) {
  const mine = ++generation;
  status(`Searching for “${query}”…`);
  $("answer").hidden = true;
  const search = api("POST", "/search", { query, k: 10, mode }).then((data) => {
    if (mine === generation) renderResults(data);
  });
  const answer = api("POST", "/answer", { question: query, k: 5, mode }).then((data) => {
    if (mine === generation) renderAnswer(data);
  });
  try {
    await Promise.all([search, answer]);
    if (mine === generation) status(`Results and answer for “${query}”.`);
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof NeedsKey) {
      pending = () => run(query, mode);
      status("An API key is needed.");
      askForKey(error.message);
    } else status(`Error: ${error.message}`);
  }
}

function fromLocation() {
  const params = new URLSearchParams(window.location.search);
  const query = (params.get("q") || "").trim();
  const mode = params.get("mode") || "hybrid";
  $("q").value = query;
  if (["hybrid", "dense", "keyword"].includes(mode)) $("mode").value = mode;
  if (query) run(query, $("mode").value);
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("q").value.trim();
    if (!query) return;
    const params = new URLSearchParams({ q: query, mode: $("mode").value });
    history.pushState(null, "", `/?${params}`);
    run(query, $("mode").value);
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("api-key").value = "";
    $("key-form").hidden = true;
    const retry = pending;
    pending = null;
    if (retry) retry();
  });
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("detail").hidden) closeDetail();
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("q").focus();
      $("q").select();
    }
  });
  window.addEventListener("popstate", fromLocation);
  // /health needs no key and says whether the others do: ask for one before the first search needs it.
  fetch("/health")
    .then((response) => response.json())
    .then((health) => {
      if (health.auth_required && !sessionStorage.getItem(KEY_STORAGE) && $("key-form").hidden) askForKey("");
    })
    .catch(() => status("The API is not reachable."));
  fromLocation();
});
