// Draws the demo's state into the page's tables and log: plain DOM, redrawn a few times a second.
import type { DemoState } from './demo-state.js';

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

function cell(row: HTMLTableRowElement, text: string | number, header = false): HTMLTableCellElement {
  const c = document.createElement(header ? 'th' : 'td');
  if (header) c.scope = 'row';
  c.textContent = String(text);
  row.append(c);
  return c;
}

export function draw(state: DemoState, terminate: (id: number) => void): void {
  const status = $('#status');
  status.dataset.state = state.failures.length > 0 ? 'failed' : state.done ? 'done' : 'running';
  status.textContent =
    state.failures.length > 0
      ? `Failed: ${state.failures.join('; ')}`
      : `${state.peers.filter((p) => p.alive).length} peers running` + (state.done ? ' — all messages sent' : '');

  const body = $<HTMLTableSectionElement>('#peers tbody');
  body.replaceChildren(
    ...state.peers.map((p) => {
      const row = document.createElement('tr');
      row.dataset.peer = String(p.id);
      if (!p.alive) row.className = 'gone';
      cell(row, `peer ${p.id}${p.kind === 'v86' ? ' (v86 Linux)' : ''}${p.alive ? '' : ' (left)'}`, true);
      for (const n of [p.sent, p.received, p.corrupt, p.doorbellsSent, p.interruptsDelivered]) cell(row, n);
      cell(row, p.peers.join(', ') || '—');
      const action = cell(row, '');
      if (p.alive) {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = `Terminate peer ${p.id}`;
        button.addEventListener('click', () => terminate(p.id));
        action.append(button);
      }
      return row;
    }),
  );
  $('#total-sent').textContent = String(state.totals.sent);
  $('#total-intact').textContent = String(state.totals.intact);
  $('#total-corrupt').textContent = String(state.totals.corrupt);
  $('#total-doorbells').textContent = String(state.totals.doorbells);
  $('#total-interrupts').textContent = String(state.totals.interrupts);

  const l = state.latency;
  $('#latency').textContent =
    l.count === 0 ? 'no samples yet' : `${l.count} samples, p50 ${l.p50} µs, p99 ${l.p99} µs, p99.9 ${l.p999} µs`;
  const most = Math.max(1, ...state.histogram.map((h) => h.count));
  $<HTMLTableSectionElement>('#histogram tbody').replaceChildren(
    ...state.histogram.map((h) => {
      const row = document.createElement('tr');
      cell(row, `${h.fromUs}–${h.toUs}`, true);
      cell(row, h.count);
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = `${(20 * h.count) / most}rem`;
      bar.setAttribute('aria-hidden', 'true');
      cell(row, '').append(bar);
      return row;
    }),
  );

  const guest = $('#guest');
  guest.hidden = !state.settings.guest;
  const guestConsole = $('#guest-console');
  if (guestConsole.textContent !== state.guestConsole) {
    guestConsole.textContent = state.guestConsole;
    guestConsole.scrollTop = guestConsole.scrollHeight; // follow the newest line, as a terminal does
  }

  const log = $('#log');
  for (let i = log.children.length; i < state.log.length; i++) {
    const item = document.createElement('li');
    item.textContent = state.log[i];
    log.append(item);
  }
}
