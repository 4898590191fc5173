#!/usr/bin/env node
// generate.js streams one completion from an Ollama server — here specd's Ollama API
// (`specd up --http-listen ADDR`) — with the unmodified `ollama` npm client, and
// prints it as JSON (text, done_reason, eval_count), so that it can be compared with
// `specd generate --json` for the same prompt and sampling:
//
//   node generate.js --host http://127.0.0.1:11434 -p "Once upon a time" -n 32 --temp 0.8 --seed 7
//   specd generate -p "Once upon a time" -n 32 --temp 0.8 --seed 7 --top-k 40 --top-p 0.9 --json
//
// (Ollama samples with top_k 40 and top_p 0.9 unless told otherwise, and so does
// specd's Ollama API; specd's gRPC API and `specd generate` take what they are given.)
'use strict';

const { parseArgs } = require('node:util');
const { Ollama } = require('ollama');

async function main() {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: 'http://127.0.0.1:11434' },
      model: { type: 'string', default: 'specd-target' },
      prompt: { type: 'string', short: 'p' },
      n: { type: 'string', short: 'n', default: '128' },
      temp: { type: 'string', default: '0' },
      seed: { type: 'string', default: '-1' },
    },
  });
  if (values.prompt === undefined) throw new Error('-p PROMPT is required');
  const ollama = new Ollama({ host: values.host });
  const stream = await ollama.generate({
    model: values.model,
    prompt: values.prompt,
    raw: true, // the prompt as it is, as `specd generate -p` sends it
    stream: true,
    options: { temperature: Number(values.temp), seed: Number(values.seed), num_predict: Number(values.n) },
  });
  let text = '';
  let last;
  for await (const part of stream) {
    text += part.response;
    last = part;
  }
  process.stdout.write(JSON.stringify({ text, done_reason: last.done_reason, eval_count: last.eval_count }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`generate.js: ${err.message}\n`);
  process.exit(1);
});
