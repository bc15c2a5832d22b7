import { expect } from 'chai';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import { Readable } from 'node:stream';
import Koa, { type Context } from 'koa';
import { markBodyStart, observeRequests } from '../../server/http/observe.js';

describe('http: watching whole requests', () => {
  async function serve(app: Koa, path: string): Promise<number> {
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      return (await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`)).status;
    } finally {
      server.close();
    }
  }

  function watched(handler: (ctx: Context) => void): { app: Koa; seen: Array<{ status: number; error: unknown }> } {
    const seen: Array<{ status: number; error: unknown }> = [];
    const app = new Koa();
    app.silent = true;
    app.use(observeRequests([{ end: (ctx) => seen.push({ status: ctx.status, error: ctx.state.internalError }) }]));
    app.use(handler);
    return { app, seen };
  }

  it("an error that escapes every handler is seen with the status Koa answers, and as the request's error", async () => {
    const boom = new Error('boom');
    const failing = watched(() => {
      throw boom;
    });
    expect(await serve(failing.app, '/')).to.equal(500);
    expect(failing.seen).to.deep.equal([{ status: 500, error: boom }]);

    const refused = watched(() => {
      throw Object.assign(new Error('too large'), { status: 413 });
    });
    expect(await serve(refused.app, '/')).to.equal(413);
    expect(refused.seen[0]!.status).to.equal(413);

    // A code Koa does not know is answered as 500, and is a failure of ours.
    const odd = new Error('odd');
    const unknownCode = watched(() => {
      throw Object.assign(odd, { status: 599 });
    });
    expect(await serve(unknownCode.app, '/')).to.equal(500);
    expect(unknownCode.seen).to.deep.equal([{ status: 500, error: odd }]);
  });

  it('an answered request is seen with its own status and no error', async () => {
    const fine = watched((ctx) => {
      ctx.status = 204;
    });
    expect(await serve(fine.app, '/')).to.equal(204);
    expect(fine.seen).to.deep.equal([{ status: 204, error: undefined }]);
  });

  const SIZE = 64 * 1024 * 1024;

  /** The bytesOut the watchers see when the client reads 256 KiB of `handler`'s 64 MiB answer and leaves. */
  async function bytesOutWhenClientLeaves(handler: (ctx: Context) => unknown): Promise<number[]> {
    const seen: number[] = [];
    const app = new Koa();
    app.silent = true;
    app.use(observeRequests([{ end: (_ctx, _ms, _in, bytesOut) => void seen.push(bytesOut) }]));
    app.use(handler);
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      await new Promise<void>((resolve) => {
        http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let got = 0;
          res.on('data', (chunk: Buffer) => {
            got += chunk.length;
            if (got >= 256 * 1024) res.destroy();
          });
          res.on('close', () => resolve());
        });
      });
      for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      server.close();
    }
    return seen;
  }

  it('a streamed response the client leaves counts the bytes that went out, not its whole length', async () => {
    const seen = await bytesOutWhenClientLeaves((ctx) => {
      ctx.length = SIZE;
      ctx.body = Readable.from((function* () {
        for (let sent = 0; sent < SIZE; sent += 64 * 1024) yield Buffer.alloc(64 * 1024);
      })());
    });
    expect(seen).to.have.length(1);
    expect(seen[0]).to.be.above(0).and.below(SIZE / 2);
  });

  it('a body the route writes itself (ctx.respond = false) and the client leaves counts what went out too', async () => {
    const seen = await bytesOutWhenClientLeaves(async (ctx) => {
      ctx.status = 200;
      ctx.set('Content-Length', String(SIZE));
      ctx.respond = false;
      ctx.res.statusCode = 200;
      markBodyStart(ctx);
      const chunk = Buffer.alloc(64 * 1024);
      for (let sent = 0; sent < SIZE && !ctx.res.destroyed; sent += chunk.length) {
        if (!ctx.res.write(chunk)) await new Promise((resolve) => ctx.res.once('drain', resolve).once('close', resolve));
      }
      if (ctx.res.destroyed) return;
      ctx.res.end();
    });
    expect(seen).to.have.length(1);
    expect(seen[0]).to.be.above(0).and.below(SIZE / 2);
  });
});
