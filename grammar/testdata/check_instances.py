"""Checks instances.json against the schemas with the jsonschema package (4.26.0, its
format checker): every "valid" instance is valid, every "invalid" one is not, and every
"outside" one is valid JSON Schema but outside the subset of formats and spellings the
grammar writes (so the Go test checks the matcher refuses it). Pydantic's instances are
also validated by their Pydantic model. Run from this folder: python3 check_instances.py
"""
import json
import sys

import jsonschema

import gen_pydantic

ok = True
cases = json.load(open("instances.json"))
for name, c in cases.items():
    schema = json.load(open(f"schemas/{name}.json"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    v = cls(schema, format_checker=cls.FORMAT_CHECKER)
    for kind in ("valid", "invalid", "outside"):
        for i, inst in enumerate(c.get(kind, [])):
            errs = list(v.iter_errors(inst))
            if (kind == "invalid") != bool(errs):
                ok = False
                print(f"{name} {kind}[{i}]: jsonschema says {'invalid: ' + errs[0].message if errs else 'valid'}")
            if name.startswith("pydantic_") and kind == "valid":
                model = gen_pydantic.MODELS[name.removeprefix("pydantic_")]
                try:
                    model.model_validate_json(json.dumps(inst))
                except Exception as e:
                    ok = False
                    print(f"{name} valid[{i}]: Pydantic refuses it: {e}")
print("ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
