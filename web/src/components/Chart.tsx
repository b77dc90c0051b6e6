import "uplot/dist/uPlot.min.css";
import { useEffect, useRef } from "react";
import uPlot from "uplot";

const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];

export interface SeriesSpec {
  label: string;
  color: string;
  values: (number | null)[];
}

/** One uPlot chart over time (x in unix seconds), resized with its container. */
export function Chart({
  title,
  x,
  series,
  format,
  axisFormat = format,
  testid,
  integer = false,
  bars = false,
}: {
  title: string;
  x: number[];
  series: SeriesSpec[];
  format: (v: number) => string;
  /** Tick labels (short); the legend uses `format`. */
  axisFormat?: (v: number) => string;
  testid: string;
  /** Counts: ticks only on whole numbers. */
  integer?: boolean;
  /** One bar per bucket instead of a line. */
  bars?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(260, el.clientWidth);
    const opts: uPlot.Options = {
      title,
      width,
      height: 220,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(integer ? 1 : 0, max) * 1.1 || 1] } },
      series: [
        { label: "Time" },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: `${s.color}22`,
          width: 2,
          points: { show: !bars && x.length < 60 },
          ...(bars ? { paths: uPlot.paths.bars!({ size: [0.7, 40] }), fill: `${s.color}aa` } : {}),
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : format(v)),
        })),
      ],
      axes: [{}, { values: (_u, splits) => splits.map((v) => axisFormat(v)), size: 64, ...(integer ? { incrs: INTEGER_STEPS } : {}) }],
      legend: { live: true },
    };
    const u = new uPlot(opts, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(260, el.clientWidth), height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [title, x, series, format, axisFormat, integer, bars]);

  const total = series.reduce((sum, s) => sum + s.values.reduce<number>((a, v) => a + (v ?? 0), 0), 0);
  return (
    <figure className="chart card" data-testid={testid} data-points={x.length} data-total={total}>
      <div ref={box} role="img" aria-label={`${title}: ${series.map((s) => `${s.label} ${format(s.values.reduce<number>((a, v) => a + (v ?? 0), 0))} in the range`).join(", ")}`} />
    </figure>
  );
}
