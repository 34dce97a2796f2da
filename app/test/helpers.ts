import { loadConfig, type Config } from '../src/config.js';

/** The default configuration with a few settings changed, as EDGE_* variables would. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ env: { EDGE_LOG_LEVEL: 'silent', ...env } });
}
