#!/usr/bin/env node
// complete.js streams one completion from an OpenAI-compatible server — here specd's
// (`specd up --http-listen ADDR`) — with the unmodified official `openai` npm client,
// and prints it as JSON (text, finish_reason, completion_tokens), so that it can be
// compared with `specd generate --json` for the same prompt and sampling:
//
//   node complete.js --base-url http://127.0.0.1:8080/v1 -p "Once upon a time" -n 32 --temp 0.8 --seed 7
//   specd generate -p "Once upon a time" -n 32 --temp 0.8 --seed 7 --json
//
// The key is read from OPENAI_API_KEY, as the client does (any text when specd runs
// without --api-keys).
'use strict';

const { parseArgs } = require('node:util');
const OpenAI = require('openai');

async function main() {
  const { values } = parseArgs({
    options: {
      'base-url': { type: 'string', default: 'http://127.0.0.1:8080/v1' },
      model: { type: 'string', default: 'specd-target' },
      prompt: { type: 'string', short: 'p' },
      n: { type: 'string', short: 'n', default: '128' },
      temp: { type: 'string', default: '0' },
      seed: { type: 'string' },
    },
  });
  if (values.prompt === undefined) throw new Error('-p PROMPT is required');
  const client = new OpenAI({ baseURL: values['base-url'], apiKey: process.env.OPENAI_API_KEY || 'none' });
  const stream = await client.completions.create({
    model: values.model,
    prompt: values.prompt,
    max_tokens: Number(values.n),
    temperature: Number(values.temp),
    ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish;
  let usage;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.text;
      finish = choice.finish_reason ?? finish;
    }
    usage = chunk.usage ?? usage;
  }
  process.stdout.write(JSON.stringify({ text, finish_reason: finish, completion_tokens: usage.completion_tokens }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`complete.js: ${err.message}\n`);
  process.exit(1);
});
