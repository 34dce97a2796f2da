#!/usr/bin/env node
// Runs the TypeScript sources through tsx: no build step, and the native fleet-store
// drivers (better-sqlite3, pg) load from node_modules as they are.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
