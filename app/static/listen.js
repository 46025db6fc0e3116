// Listening to the numbers: audio players for the worst files (per-file FAD) and for the files nearest the
// centre of each NDB bin that differs, and a pager for long tables. An <audio> element cannot send the bearer
// token, so a player first asks the api for a short-lived signed URL (GET .../audio-url) and plays that; the
// server answers range requests, so seeking works without downloading the whole file.
import {api} from "./api.js";
import {fmt, h, setChildren} from "./dom.js";

export const PAGE_SIZE = 10;

/** A "listen" button that becomes an <audio controls> player of `name` in dataset `datasetId` when pressed. */
export function player(datasetId, name, role = "candidate") {
  const slot = h("span", {class: "player", dataset: {testid: "player", role, file: name}});
  const button = h("button", {type: "button", class: "small listen", dataset: {testid: "listen"},
    title: `listen to ${name}`, "aria-label": `listen to ${role} file ${name}`}, "▶ listen");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const signed = await api.audioUrl(datasetId, name);
      const audio = h("audio", {controls: true, preload: "metadata", src: signed.url, dataset: {testid: "audio"},
        "aria-label": `${role} file ${name}`});
      setChildren(slot, audio);
      audio.play().catch(() => {});  // autoplay may be refused; the controls stay
    } catch (err) {
      button.disabled = false;
      setChildren(slot, button, h("span", {class: "error small", role: "alert"}, ` ${err.message}`));
    }
  });
  slot.append(button);
  return slot;
}

/**
 * A table that shows `rows` PAGE_SIZE at a time with previous/next buttons and "a–b of n".
 * `columns`: [{title, num?}], `cells(row)`: the cells of one row (nodes or text).
 */
export function pagedTable({rows, columns, cells, testid, pageSize = PAGE_SIZE}) {
  let page = 0;
  const pages = Math.max(1, Math.ceil(rows.length / pageSize));
  const body = h("tbody");
  const status = h("span", {class: "muted small", dataset: {testid: `${testid}-page`}, "aria-live": "polite"});
  const prev = h("button", {type: "button", class: "small", dataset: {testid: `${testid}-prev`}}, "← previous");
  const next = h("button", {type: "button", class: "small", dataset: {testid: `${testid}-next`}}, "next →");
  function show() {
    const start = page * pageSize, shown = rows.slice(start, start + pageSize);
    setChildren(body, shown.map((row) => h("tr", {dataset: {testid: `${testid}-row`}},
      cells(row).map((cell, i) => h("td", {class: columns[i]?.num ? "num" : ""}, cell)))));
    status.textContent = rows.length ? `${start + 1}–${start + shown.length} of ${rows.length}` : "none";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  prev.addEventListener("click", () => { page = Math.max(0, page - 1); show(); });
  next.addEventListener("click", () => { page = Math.min(pages - 1, page + 1); show(); });
  show();
  return h("div", {class: "table-wrap paged", dataset: {testid}},
    h("table", {class: "table"}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {scope: "col",
      class: c.num ? "num" : ""}, c.title)))), body),
    rows.length > pageSize ? h("div", {class: "pager"}, prev, status, next) : status);
}

/** The worst candidate files by per-file FAD, each with a player. */
export function worstFilesTable(entry, candidateId) {
  return pagedTable({
    rows: entry.worst.map((w, i) => ({...w, rank: i + 1})), testid: "worst-files",
    columns: [{title: "#", num: true}, {title: "file"}, {title: "FAD", num: true}, {title: "frames", num: true},
      {title: "listen"}],
    cells: (w) => [String(w.rank), w.name, fmt(w.fad), fmt(w.frames),
      candidateId ? player(candidateId, w.name) : "—"],
  });
}

/** Each NDB bin that differs: its proportions, and the candidate and reference files nearest its centre. */
export function ndbBinFiles(ndb, referenceId, candidateId) {
  const bins = ndb.bins || {};
  const files = new Map((ndb.bin_files || []).map((b) => [b.bin, b]));
  const list = (names, id, role) => names?.length
    ? h("ul", {class: "files"}, names.map((n) => h("li", {}, h("span", {class: "name"}, n), id ? player(id, n, role) : null)))
    : h("span", {class: "muted"}, "—");
  return pagedTable({
    rows: ndb.different_bins || [], testid: "ndb-bins",
    columns: [{title: "bin", num: true}, {title: "reference", num: true}, {title: "candidate", num: true},
      {title: "candidate files nearest the centre"}, {title: "reference files nearest the centre"}],
    cells: (b) => [String(b), fmt(bins.reference_proportions?.[b]), fmt(bins.candidate_proportions?.[b]),
      list(files.get(b)?.candidate, candidateId, "candidate"), list(files.get(b)?.reference, referenceId, "reference")],
  });
}

/** A paired signal metric's pairs, worst first (`sign` -1: higher values are worse), each with both files. */
export function worstPairsTable(name, entry, sign, referenceId, candidateId) {
  const pairs = entry.per_file.filter((p) => typeof p.value === "number").sort((a, b) => sign * (a.value - b.value));
  return pagedTable({
    rows: pairs, testid: `pairs-${name}`,
    columns: [{title: "file"}, {title: entry.unit || name, num: true}, {title: "reference"}, {title: "candidate"}],
    cells: (p) => [p.name, fmt(p.value), referenceId ? player(referenceId, p.name, "reference") : "—",
      candidateId ? player(candidateId, p.name, "candidate") : "—"],
  });
}
