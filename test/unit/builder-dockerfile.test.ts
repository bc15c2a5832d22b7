import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { prepareDockerfile } from '../../builder/dockerfile.js';
import { loadRecipe } from '../../builder/recipes.js';

describe('builder: the Dockerfile given to buildah', () => {
  it('expands build args in ENV (buildah caches on the unexpanded text) and adds the labels as one LABEL', () => {
    const text = ['FROM base AS build', 'ARG COMMIT_SHA', 'ENV COMMIT_SHA=${COMMIT_SHA}', 'ENV OTHER=$COMMIT_SHA LITERAL=\\$COMMIT_SHA', ''].join('\n');
    const out = prepareDockerfile(text, { COMMIT_SHA: 'cd03e0a' }, { 'org.opencontainers.image.title': 'dify', 'a.b': 'say "hi"\nthere' });
    expect(out.split('\n')).to.deep.equal([
      'FROM base AS build',
      'ARG COMMIT_SHA',
      'ENV COMMIT_SHA=cd03e0a',
      // From here COMMIT_SHA is an ENV (whose step already carries the value): left to buildah.
      'ENV OTHER=$COMMIT_SHA LITERAL=\\$COMMIT_SHA',
      '',
      'LABEL "org.opencontainers.image.title"="dify" "a.b"="say \\"hi\\" there"',
      '',
    ]);
  });

  it('follows ARG scope: defaults, stages, ENV that hides an ARG; leaves what it cannot expand safely', () => {
    const text = [
      'ARG GLOBAL=1',
      'FROM a',
      'ENV G=${GLOBAL}', // a global ARG is not in a stage's scope
      'ARG WITH_DEFAULT=two',
      'ARG UNSET',
      'ARG SPACED',
      'ENV X=${WITH_DEFAULT} Y=${UNSET} Z=${SPACED} W=${WITH_DEFAULT:-x}',
      'ENV WITH_DEFAULT=three',
      'ENV V=${WITH_DEFAULT}',
      'FROM b',
      'ENV X=${WITH_DEFAULT}',
      'RUN echo ${WITH_DEFAULT}',
    ].join('\n');
    const out = prepareDockerfile(text, { SPACED: 'a b' }, {}).split('\n');
    expect(out[2]).to.equal('ENV G=${GLOBAL}');
    expect(out[6]).to.equal('ENV X=two Y=${UNSET} Z=${SPACED} W=${WITH_DEFAULT:-x}');
    expect(out[8]).to.equal('ENV V=${WITH_DEFAULT}');
    expect(out[10]).to.equal('ENV X=${WITH_DEFAULT}');
    expect(out[11]).to.equal('RUN echo ${WITH_DEFAULT}');
  });

  it('passes continued instructions and a custom escape character through untouched', () => {
    const text = ['FROM a', 'ARG V=1', 'ENV A=${V} \\', '    B=${V}', 'RUN echo \\', '    ENV=${V}'].join('\n');
    expect(prepareDockerfile(text, {}, {})).to.equal(text);
    const escaped = ['# escape=`', 'FROM a', 'ARG V=1', 'ENV A=${V}'].join('\n');
    expect(prepareDockerfile(escaped, {}, {})).to.equal(escaped);
  });

  it('keeps the dify-api recipe instruction for instruction, with COMMIT_SHA expanded', () => {
    const recipe = loadRecipe('dify-api');
    const original = readFileSync(recipe.dockerfilePath, 'utf8');
    const out = prepareDockerfile(original, { COMMIT_SHA: 'cd03e0a9ef7f2383853ace444e3aefe4fac05cde' }, {});
    const changed = out.split('\n').filter((line, i) => line !== original.split('\n')[i]);
    expect(changed).to.deep.equal(['ENV COMMIT_SHA=cd03e0a9ef7f2383853ace444e3aefe4fac05cde']);
  });
});
