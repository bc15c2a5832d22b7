// One line pino wrote, taken apart for the formatters that reshape it (text, logstash).

export interface PinoLine {
  time: unknown;
  level: unknown;
  msg: unknown;
  /** Every other field, in order. */
  fields: Record<string, unknown>;
}

/** The line's parts, or undefined when it is not a JSON object (written as it is then). */
export function parsePinoLine(json: string): PinoLine | undefined {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const { time, level, msg, ...fields } = entry;
  return { time, level, msg, fields };
}
