// One mocha run covers unit and integration suites; the reporter ends with "N passed, N failed".
// Files named on the command line run alone (mocha would otherwise add them to the whole suite).
const named = process.argv.slice(2).some((arg) => arg.endsWith('.test.ts'));

module.exports = {
  'node-option': ['import=tsx'],
  spec: named ? [] : ['test/unit/**/*.test.ts', 'test/storage-drivers/**/*.test.ts', 'test/integration/**/*.test.ts'],
  require: ['test/root-hooks.ts'],
  extension: ['ts'],
  reporter: './test/reporter.cjs',
  timeout: 120000,
  exit: true,
};
