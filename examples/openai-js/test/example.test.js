// Runs the official `openai` npm client, unchanged, against a real `specd up
// --http-listen` on the default models (../shared/models beside the repository), with
// the Qwen2.5 chat template and its tool call syntax (hermes): every flow
// docs/clients.md lists for it, and the example's output against `specd generate` for
// the same request.
//
//   go build -o /tmp/specd ./cmd/specd && (cd examples/openai-js && npm ci && SPECD=/tmp/specd npm test)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const path = require('node:path');
const OpenAI = require('openai');

const ROOT = path.join(__dirname, '..', '..', '..');
const SPECD = process.env.SPECD;
const TEMPLATE = path.join('..', 'shared', 'vocab', 'chat', 'qwen2.5-chat-template.jinja'); // from ROOT
const MODEL = 'specd-target';
const PROMPT = 'Once upon a time';

let up; // the specd up process
let grpcAddr; // its router's gRPC address
let baseURL; // its OpenAI API, http://ADDR/v1
let client;

// specd runs the specd binary from the repository root, where it finds ../shared, and
// returns its stdout.
function specd(...args) {
  return execFileSync(SPECD, args, { cwd: ROOT, encoding: 'utf8' });
}

before(async () => {
  assert.ok(SPECD, 'set SPECD to a specd binary (go build -o /tmp/specd ./cmd/specd)');
  up = spawn(SPECD, ['up', '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--chat-template', TEMPLATE,
    '--tool-call-parser', 'hermes', '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  [grpcAddr, baseURL] = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`specd up not serving after 60 s:\n${stderr}`)), 60_000);
    up.stderr.on('data', (d) => {
      stderr += d;
      const g = /serving specd\.v1\.GenerationService on (\S+)/.exec(stderr);
      const h = /serving the OpenAI-compatible API on (http:\/\/\S+\/v1)/.exec(stderr);
      if (g && h) { clearTimeout(timer); resolve([g[1], h[1]]); }
    });
    up.on('exit', (code) => { clearTimeout(timer); reject(new Error(`specd up exited ${code}:\n${stderr}`)); });
  });
  up.stderr.resume();
  client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0 });
  // The model is there once the router lists it (its verifier is known).
  for (let start = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    const page = await client.models.list().catch(() => ({ data: [] }));
    if (page.data.length > 0) break;
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

const story = (extra = {}) => ({
  model: MODEL, temperature: 0, max_completion_tokens: 16,
  messages: [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: PROMPT }], ...extra,
});

const weather = { type: 'function', function: { name: 'get_weather', description: 'The weather in a city now.', strict: true,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } } };
const clock = { type: 'function', function: { name: 'now', description: 'The time.' } };

test('models: list and retrieve name the served model', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), [MODEL]);
  assert.equal(page.data[0].object, 'model');
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.specd.context_length, 512);
});

test('the example prints what specd generate prints for the same request', () => {
  for (const [temp, seed] of [['0', undefined], ['0.8', '7']]) {
    const args = [path.join(__dirname, '..', 'complete.js'), '--base-url', baseURL, '-p', PROMPT, '-n', '32', '--temp', temp];
    if (seed !== undefined) args.push('--seed', seed);
    const example = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }));
    const gen = ['generate', '--addr', grpcAddr, '-p', PROMPT, '-n', '32', '--temp', temp, '--json'];
    if (seed !== undefined) gen.push('--seed', seed);
    const go = JSON.parse(specd(...gen));
    assert.equal(example.text, go.text, `temp ${temp} seed ${seed}`);
    assert.ok(example.text.length > 0);
    assert.equal(example.completion_tokens, 32);
    assert.equal(example.finish_reason, 'length');
  }
});

test('chat: streamed with include_usage, the chunks make the unstreamed message', async () => {
  const whole = await client.chat.completions.create(story());
  assert.equal(whole.object, 'chat.completion');
  assert.match(whole.id, /^chatcmpl-/);
  assert.equal(whole.model, MODEL);
  const [choice] = whole.choices;
  assert.equal(choice.message.role, 'assistant');
  assert.ok(choice.message.content.length > 0);
  assert.equal(choice.finish_reason, 'length');
  assert.equal(whole.usage.completion_tokens, 16);
  assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + 16);
  assert.equal(typeof whole.usage.prompt_tokens_details.cached_tokens, 'number');

  const stream = await client.chat.completions.create(story({ stream: true, stream_options: { include_usage: true } }));
  let text = '';
  let role;
  const finishes = [];
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const c of chunk.choices) {
      if (c.delta.role) {
        assert.equal(role, undefined, 'the role comes in the first chunk alone');
        role = c.delta.role;
      }
      text += c.delta.content ?? '';
      if (c.finish_reason) finishes.push(c.finish_reason);
    }
  }
  assert.equal(text, choice.message.content);
  assert.equal(role, 'assistant');
  assert.deepEqual(finishes, ['length']);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id for every chunk');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, [], 'the usage chunk has no choices');
  assert.equal(last.usage.completion_tokens, 16);
  assert.equal(last.usage.prompt_tokens, whole.usage.prompt_tokens);

  // The SDK's stream helper accumulates the same message.
  const final = await client.chat.completions.stream(story({ stream_options: { include_usage: true } })).finalChatCompletion();
  assert.equal(final.choices[0].message.content, choice.message.content);
  assert.equal(final.usage.completion_tokens, 16);
});

test('chat: content parts, the developer role and max_tokens are the same request', async () => {
  const plain = await client.chat.completions.create(story());
  const parts = await client.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 16, // max_tokens: the older name
    messages: [{ role: 'developer', content: [{ type: 'text', text: 'You tell short stories.' }] },
      { role: 'user', content: [{ type: 'text', text: PROMPT }], name: 'reader' }],
  });
  assert.equal(parts.choices[0].message.content, plain.choices[0].message.content);
});

test('tools: a forced call, its result sent back, and the stream helper', async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const tool_choice = { type: 'function', function: { name: 'get_weather' } };
  const res = await client.chat.completions.create({ model: MODEL, messages, tools: [weather, clock], tool_choice, temperature: 0, max_completion_tokens: 100 });
  const [choice] = res.choices;
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  const [call] = choice.message.tool_calls;
  assert.match(call.id, /^call_/);
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');

  // The assistant's message as the SDK returned it, and the tool's result, go back.
  const next = await client.chat.completions.create({ model: MODEL, tools: [weather, clock], temperature: 0, max_completion_tokens: 8,
    messages: [...messages, choice.message, { role: 'tool', tool_call_id: call.id, content: '21 C, sunny' }] });
  assert.equal(next.choices[0].message.role, 'assistant');
  assert.ok(next.usage.prompt_tokens > res.usage.prompt_tokens);

  // A call without arguments, replayed with arguments "" (as streams of other servers
  // accumulate it), and allowed_tools narrowing the tools to one.
  const replay = await client.chat.completions.create({ model: MODEL, tools: [weather, clock], temperature: 0, max_completion_tokens: 100,
    tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'now' } }] } },
    messages: [...messages, { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'now', arguments: '' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '12:00' }] });
  assert.equal(replay.choices[0].message.tool_calls[0].function.name, 'now');
  assert.deepEqual(JSON.parse(replay.choices[0].message.tool_calls[0].function.arguments), {});

  // Streamed: the SDK joins the tool call deltas into the same call, parsed.
  const streamed = await client.chat.completions.stream({ model: MODEL, messages, tools: [weather, clock], tool_choice, temperature: 0, max_completion_tokens: 100 })
    .finalChatCompletion();
  const [scall] = streamed.choices[0].message.tool_calls;
  assert.equal(streamed.choices[0].finish_reason, 'tool_calls');
  assert.equal(scall.function.name, 'get_weather');
  assert.equal(scall.function.arguments, call.function.arguments);
  assert.deepEqual(scall.function.parsed_arguments, JSON.parse(call.function.arguments)); // strict: true parses them
});

test('response_format json_schema, strict: the reply is a document of the schema', async () => {
  const res = await client.chat.completions.parse({ model: MODEL, temperature: 0, max_completion_tokens: 80,
    messages: [{ role: 'user', content: 'Describe a person.' }],
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: { type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false } } } });
  const [choice] = res.choices;
  assert.equal(choice.finish_reason, 'stop');
  assert.equal(typeof choice.message.parsed.name, 'string');
  assert.ok(Number.isInteger(choice.message.parsed.age));
  assert.deepEqual(Object.keys(choice.message.parsed).sort(), ['age', 'name']);
});

test('logprobs: each token with its log-probability and the likeliest ones', async () => {
  const res = await client.chat.completions.create(story({ logprobs: true, top_logprobs: 2 }));
  const { content } = res.choices[0].logprobs;
  assert.equal(content.length, 16);
  assert.equal(content.map((t) => t.token).join(''), res.choices[0].message.content);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    // Greedy: the token drawn is the likeliest.
    assert.ok(t.logprob <= 0 && t.top_logprobs[0].logprob === t.logprob, JSON.stringify(t));
  }
});

test('n: 2 gives the choices of seeds S and S+1', async () => {
  const req = story({ temperature: 0.9, seed: 7 });
  const two = await client.chat.completions.create({ ...req, n: 2 });
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
  const [a, b] = await Promise.all([client.chat.completions.create(req), client.chat.completions.create({ ...req, seed: 8 })]);
  assert.equal(two.choices[0].message.content, a.choices[0].message.content);
  assert.equal(two.choices[1].message.content, b.choices[0].message.content);
  assert.equal(two.usage.completion_tokens, 32);
});

test('stop: a string or an array ends the text before it, finish_reason stop', async () => {
  const text = (await client.chat.completions.create(story())).choices[0].message.content;
  const word = text.trim().split(/\s+/)[1]; // a piece of the greedy text past its start
  assert.ok(word, `no second word in ${JSON.stringify(text)}`);
  for (const stop of [word, ['never in this text', word]]) {
    const res = await client.chat.completions.create(story({ stop }));
    const got = res.choices[0];
    assert.equal(got.finish_reason, 'stop', JSON.stringify(stop));
    assert.equal(got.message.content, text.slice(0, text.indexOf(word)));
  }
});

test('continue_final_message continues a prefilled assistant message; chat_template_kwargs reach the template', async () => {
  const messages = [...story().messages, { role: 'assistant', content: 'There was a' }];
  const cont = await client.chat.completions.create(story({ messages, continue_final_message: true, add_generation_prompt: false }));
  const closed = await client.chat.completions.create(story({ messages, add_generation_prompt: false }));
  // The prefill is cut before the template's end of turn ("<|im_end|>\n"): a shorter prompt,
  // and the reply is its continuation alone.
  assert.ok(cont.usage.prompt_tokens < closed.usage.prompt_tokens, `${cont.usage.prompt_tokens} vs ${closed.usage.prompt_tokens}`);
  assert.ok(cont.choices[0].message.content.length > 0 && !cont.choices[0].message.content.includes('There was a'));
  await assert.rejects(client.chat.completions.create(story({ continue_final_message: true })),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'continue_final_message');
  // Qwen2.5's template does not read enable_thinking (Qwen3's does): nothing changes.
  const plain = await client.chat.completions.create(story());
  const vars = await client.chat.completions.create(story({ chat_template_kwargs: { enable_thinking: false } }));
  assert.equal(vars.choices[0].message.content, plain.choices[0].message.content);
});

test('errors are the SDK\'s typed errors, with OpenAI\'s status, type, param and code', async () => {
  await assert.rejects(client.chat.completions.create({ ...story(), model: 'gpt-4o' }), (err) => err instanceof OpenAI.NotFoundError &&
    err.status === 404 && err.code === 'model_not_found' && err.param === 'model' && err.type === 'invalid_request_error');
  await assert.rejects(client.chat.completions.create(story({ temperature: 3 })), (err) => err instanceof OpenAI.BadRequestError &&
    err.param === 'temperature' && err.message.includes('[0, 2]'));
  await assert.rejects(client.chat.completions.create(story({ audio: { voice: 'alloy', format: 'wav' } })),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'audio');
  // A template variable the server sets itself cannot be overridden.
  await assert.rejects(client.chat.completions.create(story({ chat_template_kwargs: { messages: [] } })),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'chat_template_kwargs');
  await assert.rejects(client.chat.completions.create({ ...story(), messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'messages' && err.message.includes('image_url'));
  // An endpoint specd does not serve.
  await assert.rejects(client.embeddings.create({ model: MODEL, input: 'x' }), (err) => err instanceof OpenAI.NotFoundError && err.code === 'unknown_url');
  // Parameters specd does not know, or knows and need not act on, are ignored.
  const res = await client.chat.completions.create(story({ store: true, metadata: { run: '1' }, user: 'u1', service_tier: 'auto',
    reasoning_effort: 'low', prediction: { type: 'content', content: 'x' }, top_p: 0, some_future_field: 1 }));
  assert.equal(res.choices[0].message.content, (await client.chat.completions.create(story())).choices[0].message.content);
});

test('malformed requests are 400s in OpenAI\'s error shape', async () => {
  for (const body of ['{"model": "specd-target", "messages": [', '', '{"model": "specd-target", "messages": [{"role": "user", "content": "x"}], "max_tokens": "8"}']) {
    const res = await fetch(baseURL + '/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(res.status, 400, body);
    const { error } = await res.json();
    assert.equal(error.type, 'invalid_request_error');
    assert.ok(error.message.length > 0 && 'param' in error && 'code' in error, JSON.stringify(error));
  }
});

test('abort ends a stream, and the server serves the next request', async () => {
  const ac = new AbortController();
  const stream = await client.chat.completions.create(story({ max_completion_tokens: 400, stop: ['never'], stream: true }), { signal: ac.signal });
  // Chunks read in the same network read as the third can still come out after the
  // abort, and the SDK ends the loop quietly (or with APIUserAbortError): the stream
  // must end without its last chunk, the one with a finish_reason.
  let chunks = 0;
  let finished = null;
  try {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content && ++chunks === 3) ac.abort();
      finished ??= chunk.choices[0]?.finish_reason ?? null;
    }
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIUserAbortError, `${err}`);
  }
  assert.ok(chunks >= 3, `${chunks} content chunks, want the 3 before the abort`);
  assert.equal(finished, null, `the stream ran to its end (${chunks} chunks) instead of ending at the abort`);
  const res = await client.chat.completions.create(story({ max_completion_tokens: 4 }));
  assert.equal(res.usage.completion_tokens, 4);
});
