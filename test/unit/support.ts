// Shared helpers for the unit suites (not a test file: mocha loads only *.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { expect } from 'chai';
import { OciError } from '../../server/registry/errors.js';

/** Asserts that `fn` throws an OciError with this status and code, and returns it. */
export function throwsOci(fn: () => unknown, status: number, code: string): OciError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${status} ${code}, nothing was thrown`).to.be.instanceOf(OciError);
  const error = caught as OciError;
  expect({ status: error.status, code: error.code }).to.deep.equal({ status, code });
  return error;
}

/** Asserts that `promise` rejects with an OciError with this status and code, and returns it. */
export async function rejectsOci(promise: Promise<unknown>, status: number, code: string): Promise<OciError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${status} ${code}, the promise resolved`).to.be.instanceOf(OciError);
  const error = caught as OciError;
  expect({ status: error.status, code: error.code }).to.deep.equal({ status, code });
  return error;
}

/** Asserts that `promise` rejects with an instance of `type`, and returns the error. */
export async function rejectsWith<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${type.name}`).to.be.instanceOf(type);
  return caught as E;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Buffer));
  return Buffer.concat(parts);
}

/** An async body yielding the given parts, as a request stream would. */
export async function* bodyOf(...parts: Array<Buffer | string>): AsyncGenerator<Buffer> {
  for (const part of parts) yield Buffer.isBuffer(part) ? part : Buffer.from(part);
}

/**
 * A body that sends `first`, then waits for `release()` before it sends `rest`: a chunk in flight. `sending`
 * resolves once `first` was taken.
 */
export function gatedBody(first: string, rest: string): { body: AsyncGenerator<Buffer>; sending: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const sending = new Promise<void>((resolve) => (started = resolve));
  async function* body(): AsyncGenerator<Buffer> {
    yield Buffer.from(first);
    started();
    await gate;
    yield Buffer.from(rest);
  }
  return { body: body(), sending, release };
}

/** A request body that sends `first`, then fails with the error given to `fail` (the client went away). */
export function failingBody(first: string): { body: AsyncGenerator<Buffer>; sending: Promise<void>; fail: (error: Error) => void } {
  let fail!: (error: Error) => void;
  const broken = new Promise<never>((_, reject) => (fail = reject));
  let started!: () => void;
  const sending = new Promise<void>((resolve) => (started = resolve));
  async function* body(): AsyncGenerator<Buffer> {
    yield Buffer.from(first);
    started();
    await broken;
  }
  return { body: body(), sending, fail };
}

/** A temporary directory per suite: call in `before`, remove with the returned cleanup in `after`. */
export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `registry-unit-${prefix}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
