// Datasets have no name on the server (their id is a content hash), so this browser remembers what was
// uploaded under which folder or file name. Purely local and cosmetic; the id stays the identity.

const KEY = "soundcheck.datasetNames";

function load() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

export function datasetName(id) {
  const name = id ? load()[id] : undefined;
  return typeof name === "string" ? name : "";
}

export function rememberDatasetName(id, name) {
  if (!id || !name) return;
  const names = load();
  names[id] = String(name).slice(0, 120);
  try {
    localStorage.setItem(KEY, JSON.stringify(names));
  } catch {
    // storage full or disabled: names are a convenience only
  }
}
