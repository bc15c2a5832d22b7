// Structured JSON logs with pino; secrets are redacted at the logger so no caller can leak them.
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export function createLogger(config: Config): Logger {
  return pino({
    level: config.log.level,
    base: { pid: process.pid, ...config.log.fields },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['authorization', 'headers.authorization', 'password', '*.password', 'token', '*.token', 'secret', '*.secretkey'],
      censor: '[redacted]',
    },
  });
}
