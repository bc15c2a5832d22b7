// log.formatter: logstash, as Distribution's (logrus-logstash) formatter: one JSON object per line with
// `@timestamp`, `@version` "1", `message` and the level by name, every other field as it is.
import { parsePinoLine } from './pino-line.js';

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };

/** One pino JSON line in logstash's shape. */
export function logstashLine(json: string): string {
  const line = parsePinoLine(json);
  if (!line) return json;
  const { time, level, msg, fields } = line;
  const shaped = {
    '@timestamp': time ?? new Date().toISOString(),
    '@version': '1',
    level: LEVELS[level as number] ?? String(level),
    ...(msg !== undefined ? { message: msg } : {}),
    ...fields,
  };
  return `${JSON.stringify(shaped)}\n`;
}
