import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import Koa from 'koa';
import type { Context } from 'koa';
import { addressOf, canonical, clientAddress, limitKeyOf, TrustedProxies } from '../../server/http/client-address.js';

describe('client address: trusted proxies and X-Forwarded-For', () => {
  it('without trusted proxies: the peer, whatever X-Forwarded-For claims', () => {
    const none = new TrustedProxies([]);
    expect(none.resolve('198.51.100.7', '203.0.113.1')).to.equal('198.51.100.7');
    expect(none.resolve('127.0.0.1', '203.0.113.1, 127.0.0.1')).to.equal('127.0.0.1');
    expect(none.resolve('::1', undefined)).to.equal('::1');
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy (spoofing)', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8']);
    expect(trusted.resolve('198.51.100.7', '203.0.113.1')).to.equal('198.51.100.7');
    expect(trusted.resolve('198.51.100.7', '10.0.0.1')).to.equal('198.51.100.7');
    expect(trusted.resolve('11.0.0.1', '203.0.113.1')).to.equal('11.0.0.1');
  });

  it('from a trusted peer: the right-most untrusted entry, skipping trusted hops', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8', '192.168.1.1']);
    expect(trusted.resolve('10.0.0.5', '203.0.113.1')).to.equal('203.0.113.1');
    // The client wrote 6.6.6.6 itself; the proxies appended 203.0.113.1 and 10.0.0.7.
    expect(trusted.resolve('10.0.0.5', '6.6.6.6, 203.0.113.1, 10.0.0.7')).to.equal('203.0.113.1');
    expect(trusted.resolve('192.168.1.1', '6.6.6.6,203.0.113.9 ,192.168.1.1')).to.equal('203.0.113.9');
    // A single address is not a range: 192.168.1.2 is a client.
    expect(trusted.resolve('10.0.0.5', '203.0.113.1, 192.168.1.2')).to.equal('192.168.1.2');
    // No header: the proxy itself.
    expect(trusted.resolve('10.0.0.5', undefined)).to.equal('10.0.0.5');
  });

  it('every hop trusted: the left-most; an unreadable hop: the last address it could vouch for', () => {
    const trusted = new TrustedProxies(['10.0.0.0/8']);
    expect(trusted.resolve('10.0.0.5', '10.0.0.1, 10.0.0.2')).to.equal('10.0.0.1');
    expect(trusted.resolve('10.0.0.5', 'garbage, 10.0.0.3')).to.equal('10.0.0.3');
    expect(trusted.resolve('10.0.0.5', '203.0.113.1, unknown')).to.equal('10.0.0.5');
    expect(trusted.resolve('10.0.0.5', '')).to.equal('10.0.0.5');
  });

  it('CIDRs on and off byte boundaries', () => {
    const trusted = new TrustedProxies(['172.16.0.0/12', '100.64.0.0/10', '203.0.113.128/25']);
    expect(trusted.has('172.31.255.255')).to.equal(true);
    expect(trusted.has('172.32.0.1')).to.equal(false);
    expect(trusted.has('100.127.1.1')).to.equal(true);
    expect(trusted.has('100.128.0.1')).to.equal(false);
    expect(trusted.has('203.0.113.200')).to.equal(true);
    expect(trusted.has('203.0.113.100')).to.equal(false);
    expect(new TrustedProxies(['0.0.0.0/0']).has('8.8.8.8')).to.equal(true);
  });

  it('IPv6: ranges, single addresses, canonical spellings, ports and brackets', () => {
    const trusted = new TrustedProxies(['fd00::/8', '::1', '2001:db8:ffff::/48']);
    expect(trusted.has('FD12:3456::1')).to.equal(true);
    expect(trusted.has('fe80::1')).to.equal(false);
    expect(trusted.has('0:0:0:0:0:0:0:1')).to.equal(true);
    expect(trusted.has('2001:db8:ffff:1::1')).to.equal(true);
    expect(trusted.has('2001:db8:fffe::1')).to.equal(false);
    expect(trusted.resolve('fd00::1', '2001:DB8:0:0::1')).to.equal('2001:db8::1');
    expect(trusted.resolve('::1', '[2001:db8::2]:443')).to.equal('2001:db8::2');
    expect(trusted.resolve('::1', '203.0.113.5:51234')).to.equal('203.0.113.5');
    expect(trusted.resolve('::1', '2001:db8::3, 2001:db8:ffff::9, fd00::2')).to.equal('2001:db8::3');
    // IPv6 proxies in front of IPv4 clients and the other way round.
    expect(new TrustedProxies(['10.0.0.0/8']).resolve('10.1.1.1', '2001:db8::4')).to.equal('2001:db8::4');
  });

  it('IPv4-mapped IPv6 peers (dual-stack sockets) match IPv4 entries and key as IPv4', () => {
    const trusted = new TrustedProxies(['127.0.0.1']);
    expect(trusted.has('::ffff:127.0.0.1')).to.equal(true);
    expect(trusted.resolve('::ffff:127.0.0.1', '203.0.113.1')).to.equal('203.0.113.1');
    expect(trusted.resolve('::ffff:127.0.0.1', undefined)).to.equal('127.0.0.1');
    expect(trusted.resolve('127.0.0.1', '::ffff:203.0.113.1')).to.equal('203.0.113.1');
    expect(canonical('::FFFF:0102:0304')).to.equal('1.2.3.4');
  });

  it('refuses entries that are not addresses or CIDRs, naming the key', () => {
    for (const bad of ['', 'localhost', '10.0.0.0/33', '::/129', '10.0.0.1/8/2', '10.0.0.0/x', '10.0.0.256', 'fe80::1%eth0', '10.0.0.0/-1']) {
      expect(() => new TrustedProxies([bad]), JSON.stringify(bad)).to.throw(/ratelimit\.trustedproxies/);
    }
  });

  it('the middleware records the address; repeated X-Forwarded-For headers read as one list', async () => {
    const koa = new Koa();
    koa.use(clientAddress(new TrustedProxies(['127.0.0.1', '::1'])));
    koa.use((ctx) => {
      ctx.body = addressOf(ctx);
    });
    const server = http.createServer(koa.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const get = (headers: string[]) =>
      new Promise<string>((resolve, reject) => {
        http
          // Raw [name, value, ...] headers keep repeats apart; Node adds no Host to them.
          .get({ host: '127.0.0.1', port, path: '/', headers: ['Host', `127.0.0.1:${port}`, ...headers] }, (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => (text += chunk.toString()));
            res.on('end', () => resolve(text));
          })
          .on('error', reject);
      });
    try {
      expect(await get([])).to.equal('127.0.0.1');
      expect(await get(['X-Forwarded-For', '203.0.113.1'])).to.equal('203.0.113.1');
      expect(await get(['X-Forwarded-For', '6.6.6.6', 'X-Forwarded-For', '203.0.113.2, 127.0.0.1'])).to.equal('203.0.113.2');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('client address: the key of per-client limits', () => {
  const keyOf = (clientAddress: string) => limitKeyOf({ state: { clientAddress } } as unknown as Context);

  it('is the address for IPv4, and the /64 for IPv6 (one host may use any address of its /64)', () => {
    expect(keyOf('198.51.100.7')).to.equal('198.51.100.7');
    expect(keyOf('2001:db8:1:2::5')).to.equal('2001:db8:1:2::/64');
    expect(keyOf('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).to.equal('2001:db8:1:2::/64');
    expect(keyOf('2001:db8::1')).to.equal('2001:db8:0:0::/64');
    expect(keyOf('2001:db8::')).to.equal('2001:db8:0:0::/64');
    expect(keyOf('::1')).to.equal('0:0:0:0::/64');
    expect(keyOf('2001:db8:1:3::5')).to.not.equal(keyOf('2001:db8:1:2::5'));
  });
});
