// Root hooks: servers shared by the whole run are stopped once, after every suite.
import { stopSharedS3 } from './helpers/shared-s3.js';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopSharedS3();
  },
};
