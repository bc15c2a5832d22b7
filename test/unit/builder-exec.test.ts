import { expect } from 'chai';
import { execStreaming } from '../../builder/exec.js';

describe('builder exec: output lines', () => {
  const run = async (script: string) => {
    const lines: string[] = [];
    const result = await execStreaming(process.execPath, ['-e', script], { onLine: (line) => lines.push(line) });
    return { lines, result };
  };

  it('passes lines on as they are', async () => {
    const { lines, result } = await run(`process.stdout.write('one\\ntwo\\r\\nthree')`);
    expect(lines).to.deep.equal(['one', 'two', 'three']);
    expect(result.tail).to.deep.equal(['one', 'two', 'three']);
  });

  it('cuts output without newlines into bounded pieces, losing nothing', async () => {
    const { lines, result } = await run(`process.stdout.write('x'.repeat(100000) + '\\n' + 'y'.repeat(40000))`);
    expect(Math.max(...lines.map((line) => line.length))).to.be.at.most(16 * 1024);
    expect(lines.join('')).to.equal('x'.repeat(100000) + 'y'.repeat(40000));
    expect(Math.max(...result.tail.map((line) => line.length))).to.be.at.most(16 * 1024);
  });
});
