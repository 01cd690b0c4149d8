#!/usr/bin/env node
// Entry point of the ivshmem-client command.
import { clientCommand } from './cli/client-command.js';

clientCommand(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
