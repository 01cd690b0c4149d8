// The house's shape, read from src/'s import statements: every import between layers points
// down (errors, then the core and the OS layer, protocol, the device/server/client, monitors and
// the demo, then the entry points), no file imports itself round in a circle, only the OS layer
// and the KVM bindings load the raw addon, and the device's guest path reaches no I/O at run time.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

interface Edge {
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [relative(SRC, path)] : [];
  });
}

const graph = new Map<string, Edge[]>();
for (const file of sourceFiles(SRC)) {
  const text = readFileSync(join(SRC, file), 'utf8');
  const edges: Edge[] = [];
  for (const m of text.matchAll(/^(?:import|export)(\s+type)?\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm)) {
    const to = relative(SRC, resolve(dirname(join(SRC, file)), m[2])).replace(/\.js$/, '.ts');
    if (!to.startsWith('..')) edges.push({ to, typeOnly: m[1] !== undefined });
  }
  graph.set(file, edges);
}

/** A file's layer: its folder (monitors/kvm and monitors/v86 apart), or the file itself at the root. */
function layer(file: string): string {
  const parts = file.split('/');
  if (parts.length === 1) return parts[0].replace(/\.ts$/, '');
  return parts[0] === 'monitors' ? `${parts[0]}/${parts[1]}` : parts[0];
}

const RANK: Record<string, number> = {
  errors: 0,
  browser: 0,
  core: 1,
  os: 1,
  protocol: 2,
  device: 3,
  server: 3,
  client: 3,
  'monitors/kvm': 4,
  'monitors/v86': 4,
  demo: 4,
  bin: 5,
  index: 5,
  kvm: 5,
  web: 5,
};

describe('the import graph of src/', () => {
  it('knows every file it reads (a new folder needs a rank here)', () => {
    expect(graph.size).toBeGreaterThan(40);
    expect([...new Set([...graph.keys()].map(layer))].filter((l) => RANK[l] === undefined)).toEqual([]);
    for (const [file, edges] of graph)
      for (const e of edges)
        expect({ file, to: e.to, exists: graph.has(e.to) }).toEqual({ file, to: e.to, exists: true });
  });

  it('points down between layers: no import reaches a layer at its own rank or above', () => {
    const upward: string[] = [];
    for (const [file, edges] of graph) {
      for (const { to } of edges) {
        if (layer(to) !== layer(file) && RANK[layer(to)] >= RANK[layer(file)]) upward.push(`${file} → ${to}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no circle, and the layers stand at most 6 deep', () => {
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        circles.push([...path.slice(path.indexOf(file)), file].join(' → '));
        return;
      }
      state.set(file, 'open');
      for (const e of graph.get(file)!) visit(e.to, [...path, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    expect(circles).toEqual([]);

    const layerEdges = new Map<string, Set<string>>();
    for (const [file, edges] of graph) {
      for (const { to } of edges)
        if (layer(to) !== layer(file))
          layerEdges.set(layer(file), (layerEdges.get(layer(file)) ?? new Set()).add(layer(to)));
    }
    const depth = new Map<string, number>();
    const depthOf = (l: string): number => {
      if (!depth.has(l)) depth.set(l, 1 + Math.max(0, ...[...(layerEdges.get(l) ?? [])].map(depthOf)));
      return depth.get(l)!;
    };
    expect(Math.max(...[...graph.keys()].map((f) => depthOf(layer(f))))).toBeLessThanOrEqual(6);
  });

  it('loads the raw addon only in the OS layer and the KVM bindings', () => {
    const importers = [...graph]
      .filter(([, edges]) => edges.some((e) => e.to === 'os/binding.ts'))
      .map(([file]) => file);
    expect(importers.filter((f) => !f.startsWith('os/') && f !== 'monitors/kvm/kvm.ts')).toEqual([]);
    expect(importers.length).toBeGreaterThan(3);
  });

  it("keeps the device's guest path free of I/O: device/model.ts reaches no OS, protocol or Node I/O module at run time", () => {
    const reached = new Set<string>();
    const walk = (file: string) => {
      if (reached.has(file)) return;
      reached.add(file);
      for (const e of graph.get(file)!) if (!e.typeOnly) walk(e.to);
    };
    walk('device/model.ts');
    expect(
      [...reached].filter((f) => f.startsWith('os/') || f.startsWith('protocol/') || f.startsWith('server/')),
    ).toEqual([]);
    const nodeModules = [...reached].flatMap((f) =>
      [...readFileSync(join(SRC, f), 'utf8').matchAll(/^import\s(?!type\s)[^'"]*?from\s+'node:([^']+)'/gm)].map(
        (m) => m[1],
      ),
    );
    expect(nodeModules.filter((m) => !['events', 'diagnostics_channel', 'util'].includes(m))).toEqual([]);
  });
});
