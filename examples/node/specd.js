// Calling specd's gRPC API from Node.js with @grpc/grpc-js and
// @grpc/proto-loader, loading the committed .proto files at run time (no
// generated code). docs/clients.md walks through it; test/example.test.js runs
// every function here against a real `specd up`.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's proto/ folder; a project of your own keeps a copy of
// proto/specd/v1/generation.proto under the same relative path.
const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');

// keepCase: the field names of the .proto (max_tokens, not maxTokens).
// longs: String, so uint64 values (a seed, ModelInfo.parameters) keep every
// digit. enums: String, so enums read as their names. defaults: unset fields
// read as their zero values, as in Go and Python. oneofs: the oneof's name
// (GenerateResponse.event) says which field is set.
const LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const generation = protoLoader.loadSync('specd/v1/generation.proto', { ...LOAD_OPTIONS, includeDirs: [PROTO_DIR] });
const specd = grpc.loadPackageDefinition(generation).specd.v1;

// google.rpc.Status and the error details specd sends (RetryInfo with
// RESOURCE_EXHAUSTED, BadRequest with INVALID_ARGUMENT), from the
// google-proto-files package.
const rpcTypes = protoLoader.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], {
  ...LOAD_OPTIONS, includeDirs: [path.dirname(require.resolve('google-proto-files/package.json'))],
});

const healthProto = protoLoader.loadSync(require('grpc-health-check').protoPath, LOAD_OPTIONS);
const Health = grpc.loadPackageDefinition(healthProto).grpc.health.v1.Health;

// connect returns a GenerationService client for addr (host:port, plaintext
// as `specd up` serves on loopback). With key, every call carries the
// metadata "authorization: Bearer KEY" that a router started with
// --api-keys wants.
function connect(addr, key) {
  const client = new specd.GenerationService(addr, grpc.credentials.createInsecure());
  // grpc-js sends call credentials only over TLS, so the key goes into each
  // call's metadata (see metadata below).
  client.key = key;
  return client;
}

// metadata is the call metadata for client: its API key, if any.
function metadata(client) {
  const md = new grpc.Metadata();
  if (client.key) md.set('authorization', `Bearer ${client.key}`);
  return md;
}

// generate streams the completion of req (a specd.v1.GenerateRequest as a
// plain object) and resolves to {token_ids, text, finish_reason, stats}.
// onChunk, if given, sees each TokenChunk as it comes. An AbortSignal in
// opts.signal cancels the call (the server stops the request's work at once);
// opts.deadline (a Date or milliseconds since the epoch) bounds it. It rejects
// with the call's error: err.code is a grpc.status value, err.details the
// server's message.
function generate(client, req, { onChunk, signal, deadline } = {}) {
  return new Promise((resolve, reject) => {
    const call = client.Generate(req, metadata(client), deadline ? { deadline } : {});
    const out = { token_ids: [], text: '', finish_reason: undefined, stats: undefined };
    const abort = () => call.cancel();
    if (signal) {
      if (signal.aborted) abort();
      signal.addEventListener('abort', abort, { once: true });
    }
    call.on('data', (msg) => {
      if (msg.event === 'chunk') {
        out.token_ids.push(...msg.chunk.token_ids);
        out.text += msg.chunk.text;
        if (onChunk) onChunk(msg.chunk);
      } else if (msg.event === 'final') {
        out.finish_reason = msg.final.finish_reason;
        out.stats = msg.final.stats;
      }
    });
    // 'status' comes once, after the last message, whether the call
    // succeeded or not ('end' and 'error' may both fire on a cancelled call).
    call.on('status', (st) => {
      if (signal) signal.removeEventListener('abort', abort);
      if (st.code === grpc.status.OK) resolve(out);
    });
    call.on('error', (err) => reject(atDeadline(err, deadline)));
  });
}

// atDeadline reports a CANCELLED that arrives once the call's deadline has
// passed as DEADLINE_EXCEEDED. At the deadline a gRPC server resets the
// stream with RST_STREAM(CANCEL) (grpc-go does), and when that reset reaches
// grpc-js before its own deadline timer fires, grpc-js reports CANCELLED
// "Call cancelled". The gRPC HTTP/2 protocol asks clients to check their
// deadline on a CANCELLED status; grpc-go's client does, grpc-js does not.
function atDeadline(err, deadline) {
  if (err && err.code === grpc.status.CANCELLED && deadline !== undefined && Date.now() >= +deadline) {
    err.code = grpc.status.DEADLINE_EXCEEDED;
    err.details = `Deadline exceeded (${err.details})`;
  }
  return err;
}

// complete is the unary Complete call: the whole CompleteResponse at once.
function complete(client, req, { deadline } = {}) {
  return new Promise((resolve, reject) => {
    client.Complete(req, metadata(client), deadline ? { deadline } : {}, (err, res) => (err ? reject(atDeadline(err, deadline)) : resolve(res)));
  });
}

// unary calls any other unary method of the service by name (Tokenize,
// Detokenize, ListModels).
function unary(client, method, req) {
  return new Promise((resolve, reject) => {
    client[method](req, metadata(client), (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// statusDetails decodes the google.rpc.Status a failed call carries in its
// grpc-status-details-bin trailer into its details, each
// {type: 'google.rpc.RetryInfo', value: {...}}; [] when there are none.
function statusDetails(err) {
  const bin = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (bin.length === 0) return [];
  const status = rpcTypes['google.rpc.Status'].deserialize(bin[0]);
  return status.details.map((any) => {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const codec = rpcTypes[type];
    return { type, value: codec ? codec.deserialize(any.value) : any.value };
  });
}

// retryDelayMs is how long RESOURCE_EXHAUSTED's google.rpc.RetryInfo says
// to wait before trying again, in milliseconds; undefined without one (a
// request larger than the server's message limit: do not retry it).
function retryDelayMs(err) {
  const info = statusDetails(err).find((d) => d.type === 'google.rpc.RetryInfo');
  if (!info || !info.value.retry_delay) return undefined;
  const { seconds, nanos } = info.value.retry_delay;
  return Number(seconds) * 1000 + nanos / 1e6;
}

// health asks grpc.health.v1 for service ('' for the server as a whole,
// 'specd.v1.GenerationService' for the API) and resolves to its status name,
// 'SERVING' once a verifier is usable.
function health(addr, service = '') {
  const client = new Health(addr, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.Check({ service }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res.status);
    });
  });
}

module.exports = { grpc, connect, generate, complete, unary, statusDetails, retryDelayMs, health };
