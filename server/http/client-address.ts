// Who is the client? The socket's peer, unless that peer is a trusted proxy: then X-Forwarded-For, read from
// the right, skipping trusted hops. Entries left of the first untrusted one were written by the client itself
// and are never believed, so a client cannot pick its own rate-limit bucket or login-limit key.
import { BlockList, SocketAddress, isIP } from 'node:net';
import type { Context, Next } from 'koa';

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  /** `entries`: addresses or CIDRs, IPv4 or IPv6; throws on anything else (a typo must not trust the world). */
  constructor(entries: readonly string[]) {
    this.empty = entries.length === 0;
    for (const entry of entries) {
      const [address, prefix, extra] = entry.trim().split('/');
      const family = ipFamily(address ?? '');
      const bits = family === 'ipv4' ? 32 : 128;
      if (!family || extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) || Number(prefix ?? 0) > bits) {
        throw new Error(`ratelimit.trustedproxies: ${JSON.stringify(entry)} is not an IP address or CIDR`);
      }
      if (prefix === undefined) this.list.addAddress(address!, family);
      else this.list.addSubnet(address!, Number(prefix), family);
    }
  }

  has(address: string): boolean {
    const family = ipFamily(address);
    // BlockList matches IPv4-mapped IPv6 (::ffff:10.0.0.1) against IPv4 ranges by itself.
    return family !== undefined && this.list.check(address, family);
  }

  /** The client's address for a request that came from `peer` with this X-Forwarded-For value. */
  resolve(peer: string, forwardedFor: string | undefined): string {
    let client = canonical(peer);
    if (this.empty || !forwardedFor || !this.has(client)) return client;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseHop(hops[i]!);
      // Garbage can only come from a trusted hop's client side; the last address we could vouch for stands.
      if (!hop) return client;
      client = hop;
      if (!this.has(hop)) return hop;
    }
    return client; // every hop trusted: the left-most is as far as we can see
  }
}

/** Koa middleware: records the resolved address as ctx.state.clientAddress for limits, auth and logs. */
export function clientAddress(trusted: TrustedProxies) {
  return async function resolveClientAddress(ctx: Context, next: Next): Promise<void> {
    ctx.state.clientAddress = trusted.resolve(ctx.req.socket.remoteAddress ?? ctx.ip, ctx.get('X-Forwarded-For') || undefined);
    await next();
  };
}

/** The resolved client address, or the peer when the middleware did not run (e.g. in unit tests). */
export function addressOf(ctx: Context): string {
  return (ctx.state.clientAddress as string | undefined) ?? canonical(ctx.ip);
}

/**
 * What the per-client limits (requests, failed logins) count by: the address, or for IPv6 its /64. A host
 * is commonly given a whole /64 and may send from any address in it: per address, its budget would be
 * endless.
 */
export function limitKeyOf(ctx: Context): string {
  const address = addressOf(ctx);
  return address.includes(':') ? `${prefix64(address)}::/64` : address;
}

/** The first four groups of a canonical IPv6 address (`2001:db8:1:2::5` -> `2001:db8:1:2`). */
function prefix64(address: string): string {
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - tail.split(':').length)).fill('0')];
  while (groups.length < 4) groups.push('0');
  return groups.slice(0, 4).join(':');
}

/** One canonical spelling per address (2001:DB8:0::1 -> 2001:db8::1, ::ffff:1.2.3.4 -> 1.2.3.4), so one client is one key. */
export function canonical(address: string): string {
  const family = ipFamily(address);
  // isIP takes IPv4 only in its one spelling (no leading zeros), and this runs per request: a SocketAddress
  // costs a microsecond.
  if (family !== 'ipv6') return address;
  const spelled = new SocketAddress({ address, family }).address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(spelled);
  return mapped ? mapped[1]! : spelled;
}

function ipFamily(address: string): 'ipv4' | 'ipv6' | undefined {
  const version = isIP(address);
  // Zone ids (fe80::1%eth0) are local to one host: not something a proxy list or a bucket should name.
  return version === 4 ? 'ipv4' : version === 6 && !address.includes('%') ? 'ipv6' : undefined;
}

/** One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`; else undefined. */
function parseHop(raw: string): string | undefined {
  let hop = raw.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed) hop = bracketed[1]!;
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(hop)) hop = hop.slice(0, hop.lastIndexOf(':'));
  return ipFamily(hop) ? canonical(hop) : undefined;
}
