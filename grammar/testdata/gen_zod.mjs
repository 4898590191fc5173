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

// With "check": every "valid" instance of a zod schema in instances.json parses with
// its zod model (zod 4, and zod 3's API for the _v3 files), and every "invalid" one
// does not.
if (process.argv[2] === "check") {
  const cases = JSON.parse((await import("node:fs")).readFileSync("instances.json", "utf8"));
  let ok = true;
  for (const [name, c] of Object.entries(cases)) {
    if (!name.startsWith("zod_")) continue;
    const [, model, how] = name.split("_");
    const m = (how === "v3" ? models(z3) : models(z))[model];
    for (const kind of ["valid", "invalid"]) {
      (c[kind] || []).forEach((inst, i) => {
        if (m.safeParse(inst).success !== (kind === "valid")) {
          ok = false;
          console.log(`${name} ${kind}[${i}]: zod says ${kind === "valid" ? "invalid" : "valid"}`);
        }
      });
    }
  }
  console.log(ok ? "ok" : "FAILED");
  process.exit(ok ? 0 : 1);
}
