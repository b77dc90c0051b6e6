import { describe, expect, it } from "vitest";
import { buildOptions, renameProblem, type ReprocessForm } from "./reprocess";

const base: ReprocessForm = { delimiter: "", header: "", sheet: "", encoding: "", columns: [] };
const col = (name: string, patch = {}) => ({ name, keep: true, rename: "", cast: "", ...patch });

describe("buildOptions", () => {
  it("sends nothing for the defaults", () => expect(buildOptions(base)).toEqual({ options: {}, problems: [] }));

  it("sends delimiter (tab), header and sheet", () => {
    expect(buildOptions({ ...base, delimiter: "\\t", header: "false", sheet: " Q3 " }).options).toEqual({ delimiter: "\t", header: false, sheet: "Q3" });
  });

  it("selects only when a column is dropped, renames and casts", () => {
    const { options, problems } = buildOptions({
      ...base,
      columns: [col("id", { cast: "text" }), col("amount", { rename: "total" }), col("note", { keep: false })],
    });
    expect(problems).toEqual([]);
    expect(options.mapping).toEqual({ select: ["id", "amount"], rename: { amount: "total" }, cast: { id: "text" } });
  });

  it("refuses names the server would refuse, and duplicates", () => {
    const { problems } = buildOptions({ ...base, columns: [col("a", { rename: "Total" }), col("b", { rename: "c" }), col("c")] });
    expect(problems.some((p) => p.includes("'Total'"))).toBe(true);
    expect(problems.some((p) => p.includes("Two columns would be named 'c'"))).toBe(true);
  });

  it("needs at least one column", () => {
    expect(buildOptions({ ...base, columns: [col("a", { keep: false })] }).problems).toContain("Keep at least one column.");
  });
});

describe("renameProblem", () => {
  it.each(["total", "a1_b2", "x"])("accepts %s", (n) => expect(renameProblem(n)).toBeNull());
  it.each(["Total", "_x", "1a", "a__b", "a;b", "a".repeat(64)])("refuses %s", (n) => expect(renameProblem(n)).not.toBeNull());
});
