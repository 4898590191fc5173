// Runs the `ollama` npm client, unchanged, against a real `specd up --http-listen` on
// the default models (../shared/models beside the repository), with the Qwen2.5 chat
// template and Llama 3.1's tool call syntax: every call docs/clients.md lists, and the
// example's output against `specd generate` for the same request.
//
//   go build -o /tmp/specd ./cmd/specd && (cd examples/ollama-js && npm ci && SPECD=/tmp/specd npm test)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const path = require('node:path');
const { Ollama } = require('ollama');

const ROOT = path.join(__dirname, '..', '..', '..');
const SPECD = process.env.SPECD;
const TEMPLATE = path.join('..', 'shared', 'vocab', 'chat', 'qwen2.5-chat-template.jinja'); // from ROOT
const MODEL = 'specd-target:latest';
const PROMPT = 'Once upon a time';

let up; // the specd up process
let grpcAddr; // its router's gRPC address
let host; // its HTTP front door, http://ADDR
let ollama;

// specd runs the specd binary from the repository root, where it finds ../shared, and
// returns its stdout.
function specd(...args) {
  return execFileSync(SPECD, args, { cwd: ROOT, encoding: 'utf8' });
}

before(async () => {
  assert.ok(SPECD, 'set SPECD to a specd binary (go build -o /tmp/specd ./cmd/specd)');
  up = spawn(SPECD, ['up', '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--chat-template', TEMPLATE,
    '--tool-call-parser', 'llama3_json', '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  [grpcAddr, host] = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`specd up not serving after 60 s:\n${stderr}`)), 60_000);
    up.stderr.on('data', (d) => {
      stderr += d;
      const g = /serving specd\.v1\.GenerationService on (\S+)/.exec(stderr);
      const h = /serving Ollama's API on (http:\/\/\S+)\/api/.exec(stderr);
      if (g && h) { clearTimeout(timer); resolve([g[1], h[1]]); }
    });
    up.on('exit', (code) => { clearTimeout(timer); reject(new Error(`specd up exited ${code}:\n${stderr}`)); });
  });
  up.stderr.resume();
  ollama = new Ollama({ host });
  // The model is there once the router lists it (its verifier is known).
  for (let start = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    const { models } = await ollama.list().catch(() => ({ models: [] }));
    if (models.length > 0) break;
    assert.ok(Date.now() - start < 60_000, 'specd up: no model listed after 60 s');
  }
});

after(async () => {
  if (up && up.exitCode === null) {
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGTERM');
    await exited;
  }
});

test('the root answers as Ollama does, and the version is reported', async () => {
  const res = await fetch(host + '/');
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'Ollama is running');
  const { version } = await ollama.version();
  assert.match(version, /^\d+\.\d+\.\d+$/);
});

test('list, ps and show describe the model by a name a client sends back', async () => {
  const { models } = await ollama.list();
  assert.deepEqual(models.map((m) => m.name), [MODEL]);
  assert.equal(models[0].details.family, 'llama');
  assert.equal(models[0].details.quantization_level, 'Q8_0');
  const ps = await ollama.ps();
  assert.deepEqual(ps.models.map((m) => m.model), [MODEL]);
  // Loaded for as long as specd runs, which Ollama reports as an expiry centuries on.
  assert.ok(new Date(ps.models[0].expires_at).getFullYear() > new Date().getFullYear() + 100, `expires_at ${ps.models[0].expires_at}`);
  const show = await ollama.show({ model: MODEL });
  assert.equal(show.model_info['llama.context_length'], 512);
  assert.ok(show.capabilities.includes('tools'), `capabilities ${show.capabilities}`);
});

test('the example prints what specd generate prints for the same request', () => {
  for (const [temp, seed] of [['0', '-1'], ['0.8', '7']]) {
    const example = JSON.parse(execFileSync(process.execPath, [path.join(__dirname, '..', 'generate.js'), '--host', host,
      '-p', PROMPT, '-n', '32', '--temp', temp, `--seed=${seed}`], { encoding: 'utf8' }));
    const args = ['generate', '--addr', grpcAddr, '-p', PROMPT, '-n', '32', '--temp', temp, '--top-k', '40', '--top-p', '0.9', '--json'];
    if (seed !== '-1') args.push('--seed', seed);
    const go = JSON.parse(specd(...args));
    assert.equal(example.text, go.text, `temp ${temp} seed ${seed}`);
    assert.ok(example.text.length > 0);
    assert.equal(example.eval_count, 32);
    assert.equal(example.done_reason, 'length');
  }
});

test('generate, streamed and not, gives the same text and statistics', async () => {
  const req = { model: MODEL, prompt: PROMPT, options: { temperature: 0, num_predict: 24 } };
  const whole = await ollama.generate(req);
  let text = '';
  let last;
  for await (const part of await ollama.generate({ ...req, stream: true })) {
    text += part.response;
    last = part;
  }
  assert.equal(text, whole.response);
  assert.equal(last.done, true);
  assert.equal(whole.done_reason, 'length');
  assert.equal(whole.eval_count, 24);
  assert.ok(whole.prompt_eval_count > 0 && whole.total_duration > 0 && whole.eval_duration > 0);
  const lp = await ollama.generate({ ...req, logprobs: true, top_logprobs: 2 });
  assert.equal(lp.response, whole.response);
  assert.equal(lp.logprobs.length, 24);
  for (const l of lp.logprobs) {
    // Greedy: the token drawn is the likeliest.
    assert.ok(l.logprob <= 0 && l.top_logprobs.length === 2 && l.top_logprobs[0].logprob === l.logprob, JSON.stringify(l));
  }
});

test('chat, streamed and not, gives the same message', async () => {
  const req = { model: MODEL, messages: [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: PROMPT }],
    options: { temperature: 0, num_predict: 16 } };
  const whole = await ollama.chat(req);
  assert.equal(whole.message.role, 'assistant');
  assert.ok(whole.message.content.length > 0);
  let text = '';
  for await (const part of await ollama.chat({ ...req, stream: true })) text += part.message.content;
  assert.equal(text, whole.message.content);
});

test('chat: a last message from the assistant is continued, as Ollama does', async () => {
  const messages = [{ role: 'user', content: PROMPT }, { role: 'assistant', content: 'There was a' }];
  const req = { model: MODEL, messages, options: { temperature: 0, num_predict: 16 } };
  const cont = await ollama.chat(req);
  const answer = await ollama.chat({ ...req, messages: messages.slice(0, 1) });
  // The rendering ends right after "There was a" (no end of turn, no new turn): a prompt
  // that long, and a reply that is its continuation alone.
  assert.ok(cont.message.content.length > 0 && !cont.message.content.includes('There was a'));
  assert.ok(cont.prompt_eval_count > answer.prompt_eval_count, `${cont.prompt_eval_count} vs ${answer.prompt_eval_count}`);
  // think: false is Qwen3's enable_thinking false, which Qwen2.5's template does not read.
  assert.equal((await ollama.chat({ ...req, messages: messages.slice(0, 1), think: false })).message.content, answer.message.content);
});

test('format: a JSON Schema constrains the output', async () => {
  const format = { type: 'object', properties: { age: { type: 'integer' }, name: { type: 'string' } }, required: ['age', 'name'] };
  const res = await ollama.generate({ model: MODEL, prompt: 'The data is', raw: true, format, options: { temperature: 0 } });
  const v = JSON.parse(res.response);
  assert.equal(typeof v.age, 'number');
  assert.equal(typeof v.name, 'string');
  assert.equal(res.done_reason, 'stop');
});

test('a tool call comes back with its arguments as an object', async () => {
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  // The test model was not trained to call tools: a schema holds its reply to a call
  // in Llama 3.1's syntax, which the server's llama3_json parser then finds.
  const format = { type: 'object', required: ['name', 'parameters'],
    properties: { name: { const: 'get_weather' }, parameters: tools[0].function.parameters } };
  const res = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, format, options: { temperature: 0 } });
  assert.equal(res.message.tool_calls.length, 1);
  const call = res.message.tool_calls[0].function;
  assert.equal(call.name, 'get_weather');
  assert.equal(typeof call.arguments.city, 'string');
  assert.match(res.message.tool_calls[0].id, /^call_[a-z0-9]{8}$/);
  // The call and its result go back as history.
  const next = await ollama.chat({ model: MODEL, tools, options: { temperature: 0, num_predict: 8 }, messages: [
    { role: 'user', content: 'Weather in Paris?' }, res.message,
    { role: 'tool', content: '21 C, sunny', tool_name: 'get_weather', tool_call_id: res.message.tool_calls[0].id }] });
  assert.equal(next.done, true);
});

test('an empty prompt loads the model, and with keep_alive 0 unloads it, as in Ollama', async () => {
  assert.equal((await ollama.generate({ model: MODEL, prompt: '' })).done_reason, 'load');
  assert.equal((await ollama.generate({ model: MODEL, prompt: '', keep_alive: 0 })).done_reason, 'unload');
  assert.equal((await ollama.chat({ model: MODEL, messages: [], keep_alive: 0 })).done_reason, 'unload');
  // Names are case-blind, as Ollama's.
  assert.equal((await ollama.generate({ model: 'Specd-Target:LATEST', prompt: '' })).done_reason, 'load');
});

test('refusals are errors the client reports, with Ollama\'s status and wording', async () => {
  await assert.rejects(ollama.generate({ model: 'llama3', prompt: PROMPT }), (err) => err.status_code === 404 && err.error === "model 'llama3' not found");
  await assert.rejects(ollama.generate({ model: MODEL, prompt: PROMPT, options: { mirostat: 2 } }), (err) => err.status_code === 400 && err.error.startsWith('options.mirostat'));
  await assert.rejects(ollama.embed({ model: MODEL, input: 'x' }), (err) => err.status_code === 501);
});

test('abort ends a stream, and the server serves the next request', async () => {
  const stream = await ollama.generate({ model: MODEL, prompt: PROMPT, stream: true, options: { temperature: 0, num_predict: 400, stop: ['never'] } });
  let parts = 0;
  await assert.rejects((async () => {
    for await (const part of stream) {
      if (part.response && ++parts === 3) stream.abort();
    }
  })(), (err) => err.name === 'AbortError');
  const res = await ollama.generate({ model: MODEL, prompt: PROMPT, options: { temperature: 0, num_predict: 4 } });
  assert.equal(res.eval_count, 4);
});
