// Mocha's spec output, then one last line that CI reads: "N passed, N failed".
const Mocha = require('mocha');
const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL } = Mocha.Runner.constants;

class PassedFailedReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    runner.on(EVENT_TEST_PASS, () => { passed++; });
    // Hook failures (a server that did not start) count too: they hide the tests behind them.
    runner.on(EVENT_TEST_FAIL, () => { failed++; });
    runner.once(EVENT_RUN_END, () => {
      // Spec's epilogue listens on the same event and was registered first (in super), so this prints last.
      process.stdout.write(`${passed} passed, ${failed} failed\n`);
    });
  }
}
module.exports = PassedFailedReporter;
