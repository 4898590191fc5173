// Writes the zod schemas of the corpus: schemas/zod_*.json, three ways each model is
// turned into JSON Schema by real clients: zod 4's own z.toJSONSchema, the openai
// package's zodResponseFormat (what client.chat.completions.parse sends), and
// zod-to-json-schema over zod 3's API (zod/v3), the long-standing converter.
// Run: npm install zod@4.1.13 openai@6.49.0 zod-to-json-schema@3.25.0, then
// NODE_PATH=./node_modules node gen_zod.mjs from this folder.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const z = require("zod");
const z3 = require("zod/v3");
const { zodResponseFormat } = require("openai/helpers/zod");
const { zodToJsonSchema } = require("zod-to-json-schema");

function models(z) {
  return {
    signup: z.object({
      email: z.string().email(),
      id: z.string().uuid(),
      name: z.string().min(1).max(30),
      age: z.number().int().min(13).max(120),
      score: z.number().min(0).max(1),
      joined: z.string().datetime(),
      website: z.string().url().nullable(),
    }),
    order: z.object({
      items: z.array(z.object({ sku: z.string().length(8), qty: z.number().int().positive(), price: z.number().nonnegative() })).min(1).max(5),
      status: z.enum(["new", "paid", "shipped"]),
      note: z.string().max(100).nullable(),
      code: z.string().optional(),
      at: z.tuple([z.number(), z.number()]),
      host: z.ipv4 ? z.ipv4() : z.string().ip({ version: "v4" }),
      when: z.iso ? z.iso.date() : z.string().date(),
    }),
  };
}

function save(name, schema) {
  writeFileSync(`schemas/zod_${name}.json`, JSON.stringify(schema, null, 1) + "\n");
}

for (const [name, m] of Object.entries(models(z))) {
  save(`${name}_native`, z.toJSONSchema(m));
  if (name !== "order") save(`${name}_openai`, zodResponseFormat(m, name).json_schema.schema);
}
for (const [name, m] of Object.entries(models(z3))) {
  save(`${name}_v3`, zodToJsonSchema(m));
}
