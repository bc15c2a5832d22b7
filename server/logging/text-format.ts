// log.formatter: text, as Distribution's (logrus) text formatter: `time=... level=info msg="..." key=value`,
// one line per entry, for people reading a terminal. JSON stays the default for log pipelines.
import { parsePinoLine } from './pino-line.js';

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /^[A-Za-z0-9._:/@+*-]+$/.test(text) ? text : JSON.stringify(text);
}

/** One pino JSON line as text. */
export function textLine(json: string): string {
  const line = parsePinoLine(json);
  if (!line) return json;
  const { time, level, msg, fields } = line;
  const parts = [`time=${quote(time ?? new Date().toISOString())}`, `level=${LEVELS[level as number] ?? String(level)}`];
  if (msg !== undefined) parts.push(`msg=${quote(msg)}`);
  for (const [key, value] of Object.entries(fields)) if (value !== undefined) parts.push(`${key}=${quote(value)}`);
  return `${parts.join(' ')}\n`;
}
