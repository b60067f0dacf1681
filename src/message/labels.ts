/**
 * Node labels (`role=web`, `site=oslo`): what a node announces in its hello (the `labels` setting), what
 * an operator sets on central (`steward keys approve NODE --labels …`), what `toLabels` and
 * `steward send --to-label` select targets by, and what rules name with `label:KEY=VALUE`
 * (docs/SECURITY.md, "Labels and groups"). Keys and values are short tokens, safe in a subject, a
 * file name and a rule: a label is never ambiguous where it is written down.
 */

export type Labels = Record<string, string>;

const TOKEN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** Most labels one node may carry. */
export const MAX_LABELS = 32;

function tokenProblem(what: string, text: string): string | undefined {
  if (TOKEN.test(text)) return undefined;
  return `${what} ${JSON.stringify(text)}: use 1 to 63 letters, digits, "-" or "_", starting with a letter or digit`;
}

/** Why `value` is not a set of labels (an object of KEY → VALUE tokens), or undefined when it is one. */
export function labelsProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return 'expected an object of labels, e.g. {"role": "web"}';
  const entries = Object.entries(value);
  if (entries.length > MAX_LABELS) return `at most ${MAX_LABELS} labels, got ${entries.length}`;
  for (const [key, v] of entries) {
    const bad = tokenProblem("label key", key);
    if (bad) return bad;
    if (typeof v !== "string") return `label ${key}: expected a string value, got ${JSON.stringify(v)}`;
    const badValue = tokenProblem(`label ${key}: value`, v);
    if (badValue) return badValue;
  }
  return undefined;
}

/** `role=web,site=oslo` (or the pairs one by one) → labels; throws an Error saying which pair is wrong. */
export function parseLabelList(texts: string | readonly string[]): Labels {
  const out: Labels = {};
  for (const pair of (typeof texts === "string" ? [texts] : texts).flatMap((t) => t.split(","))) {
    const text = pair.trim();
    if (text === "") continue;
    const at = text.indexOf("=");
    if (at < 1) throw new Error(`"${text}" should be KEY=VALUE`);
    const key = text.slice(0, at);
    if (Object.hasOwn(out, key) && out[key] !== text.slice(at + 1))
      throw new Error(`label ${key} given twice, as ${out[key]} and ${text.slice(at + 1)}`);
    out[key] = text.slice(at + 1);
  }
  const problem = labelsProblem(out);
  if (problem) throw new Error(problem);
  return out;
}

/** Does a node with `labels` carry every one of `wanted`? */
export function hasLabels(labels: Readonly<Labels>, wanted: Readonly<Labels>): boolean {
  return Object.entries(wanted).every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}

/** `role=web,site=oslo`, keys in order; "" for none. */
export function formatLabels(labels: Readonly<Labels>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(",");
}

/** Labels equal as sets of pairs (key order does not matter). */
export function sameLabels(a: Readonly<Labels>, b: Readonly<Labels>): boolean {
  return formatLabels(a) === formatLabels(b);
}
