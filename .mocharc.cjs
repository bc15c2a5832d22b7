// One mocha run covers unit and integration suites; the reporter ends with "N passed, N failed".
module.exports = {
  'node-option': ['import=tsx'],
  spec: ['test/unit/**/*.test.ts', 'test/storage-drivers/**/*.test.ts', 'test/integration/**/*.test.ts'],
  require: ['test/root-hooks.ts'],
  extension: ['ts'],
  reporter: './test/reporter.cjs',
  timeout: 120000,
  exit: true,
};
