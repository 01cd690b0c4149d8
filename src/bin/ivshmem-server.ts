#!/usr/bin/env node
// Entry point of the ivshmem-server command.
import { serverCommand } from './server-command.js';

serverCommand(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
