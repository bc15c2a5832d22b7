// The Dockerfile buildah is given: the original with two changes that buildah 1.28 needs.
//  - Build-arg references in single-line ENV instructions are replaced by their values (`ENV
//    COMMIT_SHA=${COMMIT_SHA}` -> `ENV COMMIT_SHA=cd03e0a...`). buildah keys its layer cache on the
//    unexpanded text, so a new value would otherwise reuse the old one from the cache; BuildKit records
//    the expanded form in the history too.
//  - The image's labels become one LABEL instruction at the end, instead of buildah's one step per
//    --label: each step is a commit, and the changing ones (created, revision) run on every build.
// Anything this does not understand (a custom escape character, multi-line ENV, ${NAME:-default}, values
// with spaces or quotes) is left as it is.

const SAFE_VALUE = /^[A-Za-z0-9._:/@+=,%-]*$/;

export function prepareDockerfile(text: string, buildArgs: Record<string, string>, labels: Record<string, string>): string {
  const lines = text.split('\n');
  const customEscape = lines.some((line) => /^#\s*escape\s*=/i.test(line.trim()));
  const out: string[] = [];
  let args = new Map<string, string | undefined>();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    // A continued instruction passes through whole; only its keyword matters for the ARG scope.
    const instruction = /^([A-Za-z]+)\s+(.*)$/.exec(trimmed);
    const keyword = instruction?.[1]!.toUpperCase();
    if (keyword === 'FROM') args = new Map();
    if (keyword === 'ARG' && !trimmed.endsWith('\\')) {
      for (const declaration of instruction![2]!.split(/\s+/)) {
        const eq = declaration.indexOf('=');
        const name = eq < 0 ? declaration : declaration.slice(0, eq);
        const fallback = eq < 0 ? undefined : unquote(declaration.slice(eq + 1));
        if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) args.set(name, buildArgs[name] ?? fallback);
      }
    }
    if (keyword === 'ENV' && !customEscape && !trimmed.endsWith('\\') && !trimmed.includes("'")) {
      const expanded = line.replace(/(?<!\\)\$\{([A-Za-z_][A-Za-z0-9_]*)\}|(?<!\\)\$([A-Za-z_][A-Za-z0-9_]*)/g, (match, braced: string | undefined, bare: string | undefined) => {
        const value = args.get((braced ?? bare)!);
        return value !== undefined && SAFE_VALUE.test(value) ? value : match;
      });
      out.push(expanded);
      // An ENV of the same name hides the ARG from here on.
      for (const match of instruction![2]!.matchAll(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=/g)) args.delete(match[1]!);
      continue;
    }
    out.push(line);
    // Skip the rest of a continued instruction unchanged.
    let current = line;
    while (current.trimEnd().endsWith('\\') && i + 1 < lines.length) {
      current = lines[++i]!;
      out.push(current);
    }
  }
  const entries = Object.entries(labels);
  if (entries.length > 0) {
    const pairs = entries.map(([key, value]) => `${quote(key)}=${quote(value.replace(/[\r\n]+/g, ' '))}`);
    if (out.at(-1) !== '') out.push('');
    out.push(`LABEL ${pairs.join(' ')}`, '');
  }
  return out.join('\n');
}

function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function unquote(value: string): string {
  return /^".*"$/.test(value) ? value.slice(1, -1) : value;
}
