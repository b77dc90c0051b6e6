/** The reprocess form's state turned into POST /api/v1/jobs options. */

export const CAST_TYPES = ["bigint", "double precision", "numeric", "boolean", "date", "timestamp", "timestamptz", "text"];

export interface ColumnChoice {
  name: string;
  keep: boolean;
  rename: string;
  cast: string;
}

export interface ReprocessForm {
  delimiter: string; // "" = detect
  header: "" | "true" | "false";
  sheet: string;
  encoding: string;
  columns: ColumnChoice[];
}

export interface JobOptions {
  delimiter?: string;
  header?: boolean;
  sheet?: string;
  encoding?: string;
  mapping?: { select?: string[]; rename?: Record<string, string>; cast?: Record<string, string> };
}

/** Same rule as the server's header sanitiser: lower snake_case, ≤ 63 bytes, not starting with a digit or "_". */
export function renameProblem(name: string): string | null {
  if (!name) return null;
  if (new TextEncoder().encode(name).length > 63) return "at most 63 bytes";
  if (!/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(name)) return "lower snake_case: letters, digits, single _ between them, starting with a letter";
  return null;
}

export function buildOptions(form: ReprocessForm): { options: JobOptions; problems: string[] } {
  const options: JobOptions = {};
  const problems: string[] = [];
  if (form.delimiter) options.delimiter = form.delimiter === "\\t" ? "\t" : form.delimiter;
  if (form.header) options.header = form.header === "true";
  if (form.sheet.trim()) options.sheet = form.sheet.trim();
  if (form.encoding.trim()) options.encoding = form.encoding.trim();

  const kept = form.columns.filter((c) => c.keep);
  const mapping: NonNullable<JobOptions["mapping"]> = {};
  if (form.columns.length && kept.length === 0) problems.push("Keep at least one column.");
  if (kept.length && kept.length < form.columns.length) mapping.select = kept.map((c) => c.name);
  const names = new Map<string, string>();
  for (const c of kept) {
    const to = c.rename.trim();
    if (to && to !== c.name) {
      const problem = renameProblem(to);
      if (problem) problems.push(`Rename of ${c.name} to '${to}': ${problem}.`);
      (mapping.rename ??= {})[c.name] = to;
    }
    const final = to || c.name;
    if (names.has(final)) problems.push(`Two columns would be named '${final}' (${names.get(final)} and ${c.name}).`);
    names.set(final, c.name);
    if (c.cast) (mapping.cast ??= {})[c.name] = c.cast;
  }
  if (mapping.select || mapping.rename || mapping.cast) options.mapping = mapping;
  return { options, problems };
}
