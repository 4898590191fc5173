// Runs the Node.js example against a real `specd up` on the default models
// (../shared/models beside the repository): every call docs/clients.md shows,
// and the example's output against `specd generate` for the same request.
//
//   go build -o /tmp/specd ./cmd/specd && (cd examples/node && npm ci && SPECD=/tmp/specd npm test)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { grpc, connect, generate, complete, unary, statusDetails, retryDelayMs, health } = require('../specd');

const ROOT = path.join(__dirname, '..', '..', '..');
const SPECD = process.env.SPECD;
const PROMPT = 'Once upon a time';

let up; // the specd up process
let addr; // its router's address
let dir; // key files
let client; // with the unlimited key
const keyFile = (name) => path.join(dir, `${name}.key`);

// specd runs the specd binary from the repository root, where it finds
// ../shared/models, and returns its stdout.
function specd(...args) {
  return execFileSync(SPECD, args, { cwd: ROOT, encoding: 'utf8' });
}

before(async () => {
  assert.ok(SPECD, 'set SPECD to a specd binary (go build -o /tmp/specd ./cmd/specd)');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'specd-node-'));
  const keys = path.join(dir, 'keys.txt');
  fs.writeFileSync(path.join(dir, 'all.key'), specd('key', 'new', 'all', '--append', keys));
  fs.writeFileSync(path.join(dir, 'one.key'), specd('key', 'new', 'one', '--streams', '1', '--append', keys));
  up = spawn(SPECD, ['up', '--listen', '127.0.0.1:0', '--api-keys', keys, '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`specd up not serving after 60 s:\n${stderr}`)), 60_000);
    up.stderr.on('data', (d) => {
      stderr += d;
      const m = /serving specd\.v1\.GenerationService on (\S+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    up.on('exit', (code) => { clearTimeout(timer); reject(new Error(`specd up exited ${code}:\n${stderr}`)); });
  });
  up.stderr.resume();
  // The router is SERVING once a verifier is usable (docs/operations.md).
  for (let start = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    if ((await health(addr).catch(() => '')) === 'SERVING') break;
    assert.ok(Date.now() - start < 60_000, 'specd up: router not SERVING after 60 s');
  }
  client = connect(addr, fs.readFileSync(keyFile('all'), 'utf8').trim());
});

after(async () => {
  if (client) client.close();
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGTERM');
    await exited;
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('health: the server and its API are SERVING', async () => {
  assert.equal(await health(addr, ''), 'SERVING');
  assert.equal(await health(addr, 'specd.v1.GenerationService'), 'SERVING');
});

test('the example prints what specd generate prints for the same seed', () => {
  for (const [temp, seed] of [['0', '0'], ['0.8', '7'], ['0.8', '18446744073709551615']]) {
    const args = ['--addr', addr, '-p', PROMPT, '-n', '48', '--temp', temp, '--seed', seed, '--api-key-file', keyFile('all')];
    const node = JSON.parse(execFileSync(process.execPath, [path.join(__dirname, '..', 'generate.js'), ...args], { encoding: 'utf8' }));
    const go = JSON.parse(specd('generate', ...args, '--json'));
    assert.deepEqual(node.output_ids, go.output_ids, `temp ${temp} seed ${seed}: token ids`);
    assert.equal(node.text, go.text, `temp ${temp} seed ${seed}: text`);
    assert.ok(node.output_ids.length > 0);
  }
});

test('streamed and unary calls give the same completion', async () => {
  const req = { prompt: PROMPT, max_tokens: 40, sampling: { temperature: 0.8, seed: '42' } };
  const chunks = [];
  const streamed = await generate(client, req, { onChunk: (c) => chunks.push(c) });
  const whole = await complete(client, req);
  assert.ok(chunks.length > 0);
  assert.deepEqual(streamed.token_ids, whole.token_ids);
  assert.equal(streamed.text, whole.text);
  assert.equal(streamed.finish_reason, 'FINISH_REASON_LENGTH');
  assert.equal(streamed.stats.completion_tokens, 40);
});

test('a stop string ends the text before it', async () => {
  const greedy = await complete(client, { prompt: PROMPT, max_tokens: 40 });
  const word = greedy.text.trim().split(/\s+/)[3];
  const res = await complete(client, { prompt: PROMPT, max_tokens: 40, stop: [word] });
  assert.equal(res.finish_reason, 'FINISH_REASON_STOP_STRING');
  assert.equal(res.text, greedy.text.slice(0, greedy.text.indexOf(word)));
});

test('logprobs: one per token, bytes as a Buffer', async () => {
  const res = await complete(client, { prompt: PROMPT, max_tokens: 4, logprobs: true, top_logprobs: 2 });
  assert.equal(res.logprobs.length, res.token_ids.length);
  for (const lp of res.logprobs) {
    assert.ok(lp.logprob <= 0);
    assert.ok(Buffer.isBuffer(lp.token));
    assert.equal(lp.top.length, 2);
  }
});

test('cancelling a stream stops it, and the server frees its stream at once', async () => {
  const one = connect(addr, fs.readFileSync(keyFile('one'), 'utf8').trim());
  try {
    const ac = new AbortController();
    let tokens = 0;
    const req = { prompt: PROMPT, max_tokens: 0, ignore_eos: true }; // runs to the context (512)
    await assert.rejects(generate(one, req, { signal: ac.signal, onChunk: (c) => { tokens += c.token_ids.length; if (tokens >= 5) ac.abort(); } }),
      (err) => err.code === grpc.status.CANCELLED);
    assert.ok(tokens < 500, `${tokens} tokens arrived after the cancel`);
    // The key allows one stream: the next one is admitted as soon as the
    // router has seen the cancel.
    const start = Date.now();
    for (;;) {
      try {
        await complete(one, { prompt: PROMPT, max_tokens: 1 });
        break;
      } catch (err) {
        assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
        assert.ok(Date.now() - start < 2000, 'the cancelled stream still holds the key after 2 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } finally {
    one.close();
  }
});

test('a deadline shorter than the generation ends it with DEADLINE_EXCEEDED', async () => {
  await assert.rejects(generate(client, { prompt: PROMPT, max_tokens: 0, ignore_eos: true }, { deadline: Date.now() + 30 }),
    (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
});

test('RESOURCE_EXHAUSTED carries a RetryInfo the client decodes', async () => {
  const one = connect(addr, fs.readFileSync(keyFile('one'), 'utf8').trim());
  const ac = new AbortController();
  let holding;
  const started = new Promise((r) => { holding = r; });
  const held = generate(one, { prompt: PROMPT, max_tokens: 0, ignore_eos: true }, { signal: ac.signal, onChunk: () => holding() });
  held.catch(() => {});
  try {
    await started;
    const err = await complete(one, { prompt: PROMPT, max_tokens: 1 }).then(() => assert.fail('second stream of a streams=1 key admitted'), (e) => e);
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.equal(retryDelayMs(err), 1000);
  } finally {
    ac.abort();
    one.close();
  }
});

test('bad input is INVALID_ARGUMENT naming the field, also as a BadRequest detail', async () => {
  const err = await complete(client, { prompt: PROMPT, sampling: { temperature: 1, top_p: 0 } }).then(() => assert.fail('top_p 0 accepted'), (e) => e);
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /^sampling\.top_p: /);
  const bad = statusDetails(err).find((d) => d.type === 'google.rpc.BadRequest');
  assert.equal(bad.value.field_violations[0].field, 'sampling.top_p');
});

test('a string cut inside an emoji (a lone surrogate) is INVALID_ARGUMENT naming its field', async () => {
  const cut = 'Say 🙂'.slice(0, -1); // leaves the emoji's high surrogate
  const err = await complete(client, { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: cut }] })
    .then(() => assert.fail('accepted'), (e) => e);
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(err.details, 'messages[1].content: not valid UTF-8');
});

test('without the API key: UNAUTHENTICATED', async () => {
  const anon = connect(addr);
  try {
    await assert.rejects(complete(anon, { prompt: PROMPT, max_tokens: 1 }), (err) => err.code === grpc.status.UNAUTHENTICATED);
  } finally {
    anon.close();
  }
});

test('Tokenize and Detokenize round-trip a text', async () => {
  const tok = await unary(client, 'Tokenize', { text: 'Hello world', add_bos: true });
  assert.equal(tok.token_ids.length, tok.pieces.length);
  const detok = await unary(client, 'Detokenize', { token_ids: tok.token_ids, skip_special_tokens: true });
  assert.equal(detok.text, 'Hello world');
});
