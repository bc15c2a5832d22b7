// Structured logs with pino (JSON, or text or logstash with log.formatter); secrets are redacted at the logger so no
// caller can leak them: known fields by name, free text (messages, errors) by pattern.
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';
import { scrubLogObject, scrubText } from './logging/redact.js';
import { batchedDestination } from './logging/destination.js';
import { logstashLine } from './logging/logstash-format.js';
import { textLine } from './logging/text-format.js';

const REFORMAT = { json: undefined, text: textLine, logstash: logstashLine } as const;

export function createLogger(config: Config): Logger {
  const options = loggerOptions(config);
  return pino(options, batchedDestination(REFORMAT[config.log.formatter]));
}

/** The options of every logger of the registry (tests build one with their own destination). */
export function loggerOptions(config: Config): pino.LoggerOptions {
  return {
    level: config.log.level,
    base: { pid: process.pid, ...config.log.fields },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { log: scrubLogObject },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = scrubText(args[i] as string);
        return method.apply(this, args as Parameters<typeof method>);
      },
    },
  };
}
