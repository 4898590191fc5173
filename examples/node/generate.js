#!/usr/bin/env node
// generate.js streams one completion from specd and prints it as JSON with
// the fields `specd generate --json` prints (output_ids, text,
// finish_reason), so the two can be compared:
//
//   node generate.js --addr 127.0.0.1:7070 -p "Once upon a time" -n 32 --temp 0.8 --seed 7
//   specd generate --addr 127.0.0.1:7070 -p "Once upon a time" -n 32 --temp 0.8 --seed 7 --json
//
// --api-key-file F sends the key in F, as specd generate does.
'use strict';

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { connect, generate } = require('./specd');

async function main() {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string', default: '127.0.0.1:7070' },
      prompt: { type: 'string', short: 'p' },
      n: { type: 'string', short: 'n', default: '128' },
      temp: { type: 'string', default: '0' },
      seed: { type: 'string' },
      'api-key-file': { type: 'string' },
    },
  });
  if (values.prompt === undefined) throw new Error('-p PROMPT is required');
  const key = values['api-key-file'] ? fs.readFileSync(values['api-key-file'], 'utf8').trim() : undefined;
  const sampling = { temperature: Number(values.temp) };
  // A uint64 goes as a decimal string: a JavaScript Number would lose digits
  // above 2^53 (and a negative one would be sent as 0).
  if (values.seed !== undefined) sampling.seed = values.seed;
  const client = connect(values.addr, key);
  try {
    const res = await generate(client, { prompt: values.prompt, max_tokens: Number(values.n), sampling });
    process.stdout.write(JSON.stringify({ output_ids: res.token_ids, text: res.text, finish_reason: res.finish_reason }) + '\n');
  } finally {
    client.close();
  }
}

main().catch((err) => {
  process.stderr.write(`generate.js: ${err.details || err.message}\n`);
  process.exit(1);
});
