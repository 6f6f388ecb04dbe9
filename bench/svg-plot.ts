/** A small SVG line chart (no dependency): step lines over a shared x axis, with ticks, labels and a legend. */
export interface Series {
  label: string;
  color: string;
  /** [x, y] points, x ascending. */
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Horizontal reference lines (e.g. the fleet size). */
  guides?: readonly { y: number; label: string }[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** About five round tick values from 0 to at least `max`. */
function ticks(max: number): number[] {
  const raw = max / 5 || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toFixed(6)));
  if (out[out.length - 1]! < max) out.push(Number((out[out.length - 1]! + step).toFixed(6)));
  return out;
}

export function lineChart(series: readonly Series[], o: PlotOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 400;
  const m = { left: 64, right: 20, top: 36, bottom: 48 };
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...series.flatMap((s) => s.points.map((p) => p[1])), ...(o.guides ?? []).map((g) => g.y)];
  const xt = ticks(Math.max(1e-9, ...xs));
  const yt = ticks(Math.max(1, ...ys));
  const xMax = xt[xt.length - 1]!;
  const yMax = yt[yt.length - 1]!;
  const px = (x: number) => m.left + (x / xMax) * (W - m.left - m.right);
  const py = (y: number) => H - m.bottom - (y / yMax) * (H - m.top - m.bottom);
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
  ];
  for (const x of xt) {
    out.push(
      `<line x1="${f(px(x))}" y1="${m.top}" x2="${f(px(x))}" y2="${H - m.bottom}" stroke="#eee"/>`,
      `<text x="${f(px(x))}" y="${H - m.bottom + 16}" text-anchor="middle">${x}</text>`,
    );
  }
  for (const y of yt) {
    out.push(
      `<line x1="${m.left}" y1="${f(py(y))}" x2="${W - m.right}" y2="${f(py(y))}" stroke="#eee"/>`,
      `<text x="${m.left - 6}" y="${f(py(y) + 4)}" text-anchor="end">${y}</text>`,
    );
  }
  out.push(
    `<line x1="${m.left}" y1="${H - m.bottom}" x2="${W - m.right}" y2="${H - m.bottom}" stroke="#333"/>`,
    `<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${H - m.bottom}" stroke="#333"/>`,
    `<text x="${(m.left + W - m.right) / 2}" y="${H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  for (const g of o.guides ?? []) {
    out.push(
      `<line x1="${m.left}" y1="${f(py(g.y))}" x2="${W - m.right}" y2="${f(py(g.y))}" stroke="#999" stroke-dasharray="2 3"/>`,
      `<text x="${W - m.right - 4}" y="${f(py(g.y) - 4)}" text-anchor="end" fill="#666">${esc(g.label)}</text>`,
    );
  }
  series.forEach((s, i) => {
    // A step line: a count holds its value until the next event.
    let d = '';
    let lastY = 0;
    for (const [x, y] of s.points) {
      d += d === '' ? `M${f(px(x))},${f(py(y))}` : `H${f(px(x))}V${f(py(y))}`;
      lastY = y;
    }
    if (d === '') d = `M${f(px(0))},${f(py(0))}`;
    d += `H${f(px(xMax))}V${f(py(lastY))}`;
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<line x1="${m.left + 12}" y1="${m.top + 12 + i * 18}" x2="${m.left + 36}" y2="${m.top + 12 + i * 18}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${m.left + 42}" y="${m.top + 16 + i * 18}">${esc(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
