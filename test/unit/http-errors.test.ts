import { expect } from 'chai';
import type { AddressInfo } from 'node:net';
import Koa, { type Context } from 'koa';
import { ociErrors } from '../../server/http/errors.js';

describe('http: every failure as the spec\'s JSON error body', () => {
  async function answer(handler: (ctx: Context) => void): Promise<{ status: number; body: string }> {
    const app = new Koa();
    app.silent = true;
    app.use(async (ctx, next) => {
      ctx.state.requestId = 'req-1';
      await next();
    });
    app.use(ociErrors);
    app.use(handler);
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/`);
      return { status: res.status, body: await res.text() };
    } finally {
      server.close();
    }
  }

  it('an unexpected error is a 500 with code UNKNOWN (as Distribution) and the request id, nothing internal', async () => {
    const { status, body } = await answer(() => {
      throw new Error('ENOENT: secret path /var/lib/registry');
    });
    expect(status).to.equal(500);
    expect(JSON.parse(body)).to.deep.equal({ errors: [{ code: 'UNKNOWN', message: 'internal server error', detail: { requestId: 'req-1' } }] });
  });
});
