// Job ids are UUIDv7 (RFC 9562): a 48-bit millisecond timestamp first, so ids sort by creation as
// strings, in storage listings and Redis lexicographic ranges alike. The 12-bit `rand_a` field is a
// counter within one millisecond (RFC 9562 method 1), so ids made by one process stay ordered too.
import { randomBytes } from 'node:crypto';

export const JOB_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let lastMs = 0;
let counter = 0;

/** A clock that went back further than this restarts the sequence rather than pinning ids to the past time. */
const MAX_CLOCK_STEP_BACK_MS = 1_000;

export function newJobId(now: number = Date.now()): string {
  if (now > lastMs || lastMs - now > MAX_CLOCK_STEP_BACK_MS) {
    lastMs = now;
    counter = randomBytes(2).readUInt16BE(0) & 0x7ff; // leaves room to count up within this millisecond
  } else if (++counter > 0xfff) {
    lastMs += 1; // counter spent: borrow the next millisecond rather than go backwards
    counter = 0;
  }
  const time = lastMs.toString(16).padStart(12, '0');
  const random = randomBytes(8);
  random[0] = (random[0]! & 0x3f) | 0x80; // RFC 4122 variant
  const tail = random.toString('hex');
  return `${time.slice(0, 8)}-${time.slice(8)}-7${counter.toString(16).padStart(3, '0')}-${tail.slice(0, 4)}-${tail.slice(4)}`;
}

export function isJobId(value: string): boolean {
  return JOB_ID_PATTERN.test(value);
}

/** Creation time (ms) encoded in an id. */
export function jobIdTime(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
