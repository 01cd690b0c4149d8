#!/usr/bin/env node
// Entry point of the ivshmem-client command.
import { clientCommand } from './client-command.js';

clientCommand(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
