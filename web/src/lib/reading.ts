import type { FileRecord, JobRecord } from "./types";

/** Where a reading setting came from: the job's options, the worker's (or upload's) detection, or nowhere yet. */
export type Source = "given" | "detected" | "unknown";

export interface Reading {
  encoding: { value: string | null; source: Source };
  delimiter: { value: string | null; source: Source };
  header: { value: boolean | null; source: Source };
  sheet: { value: string | null; source: Source };
}

function str(v: unknown): string | null {
  return typeof v === "string" && v ? v : null;
}

function pick(given: string | null, ...detected: (string | null | undefined)[]): { value: string | null; source: Source } {
  if (given) return { value: given, source: "given" };
  const found = detected.find((d) => !!d) ?? null;
  return { value: found, source: found ? "detected" : "unknown" };
}

/**
 * How the file was read: an option the job was given wins, then what its worker detected
 * (`detected`, absent on jobs older than that field), then what the upload sniffed.
 */
export function readingOf(
  file: Pick<FileRecord, "encoding" | "delimiter">,
  job: Pick<JobRecord, "options" | "detected"> | null,
): Reading {
  const opts = (job?.options ?? {}) as Record<string, unknown>;
  const detected = job?.detected ?? null;
  return {
    encoding: pick(str(opts.encoding), detected?.encoding, file.encoding),
    delimiter: pick(str(opts.delimiter), detected?.delimiter, file.delimiter),
    header:
      typeof opts.header === "boolean"
        ? { value: opts.header, source: "given" }
        : typeof detected?.header === "boolean"
          ? { value: detected.header, source: "detected" }
          : { value: null, source: "unknown" },
    sheet: pick(str(opts.sheet), detected?.sheet),
  };
}
