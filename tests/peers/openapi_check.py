#!/usr/bin/env python3
"""Checks HTTP exchanges against an OpenAPI 3.1 document, as a client would.

Reads one exchange per line on stdin (JSON):
  {"method": "post", "path": "/v1/jobs", "status": 200,
   "headers": {"www-authenticate": "..."},           # response headers, lower-case
   "request": {"content_type": "...", "body": ...},    # body: parsed JSON, or null
   "response": {"content_type": "...", "body": ...}}   # body: parsed JSON, or null
and answers one line per exchange: {"request": null | "why not", "response": null | "why not"}.

At start every schema of the document is checked to be valid JSON Schema 2020-12.
The request body is checked against the operation's requestBody schema for its
content type (JSON bodies only); the response's status must be documented, its
content type one the document lists for it, its body valid against that schema,
and the headers the document marks required present. Schemas are JSON Schema
2020-12 (OpenAPI 3.1's dialect), validated by `jsonschema`; relative `$ref`s
(`job.schema.json`) resolve beside the document.

usage: openapi_check.py docs/openapi.yaml
"""

import json
import pathlib
import sys

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012


def pointer(*parts):
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def main():
    doc_path = pathlib.Path(sys.argv[1]).resolve()
    doc = yaml.safe_load(doc_path.read_text(encoding="utf-8"))
    base = doc_path.as_uri()
    resources = [(base, DRAFT202012.create_resource(doc))]
    for sibling in doc_path.parent.glob("*.schema.json"):
        schema = json.loads(sibling.read_text(encoding="utf-8"))
        resources.append((sibling.as_uri(), DRAFT202012.create_resource(schema)))
    registry = Registry().with_resources(resources)
    # Every schema in the document must itself be valid JSON Schema 2020-12.
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        Draft202012Validator.check_schema(schema)
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            bodies = list(op.get("requestBody", {}).get("content", {}).values())
            for r in op.get("responses", {}).values():
                bodies += list(r.get("content", {}).values())
            for body in bodies:
                Draft202012Validator.check_schema(body.get("schema", {}))

    def check(schema_path, instance):
        validator = Draft202012Validator({"$ref": base + "#/" + pointer(*schema_path)}, registry=registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if not errors:
            return None
        return "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5])

    for line in sys.stdin:
        if not line.strip():
            continue
        ex = json.loads(line)
        method, path = ex["method"].lower(), ex["path"]
        out = {"request": None, "response": None}
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            out["request"] = out["response"] = f"{method.upper()} {path} is not in the document"
            print(json.dumps(out), flush=True)
            continue
        req = ex.get("request") or {}
        ct = (req.get("content_type") or "").split(";")[0].strip()
        content = op.get("requestBody", {}).get("content", {})
        if ct not in content:
            out["request"] = f"request content type {ct!r} is not documented"
        elif ct.endswith("json") and not ct.endswith("ndjson"):
            out["request"] = check(["paths", path, method, "requestBody", "content", ct, "schema"], req.get("body"))
        status = str(ex["status"])
        responses = op.get("responses", {})
        if status not in responses:
            out["response"] = f"status {status} is not documented"
        else:
            spec = responses[status]
            problems = []
            headers = {k.lower(): v for k, v in (ex.get("headers") or {}).items()}
            for name, h in spec.get("headers", {}).items():
                if h.get("required") and name.lower() not in headers:
                    problems.append(f"required header {name} missing")
            rct = ((ex.get("response") or {}).get("content_type") or "").split(";")[0].strip()
            rcontent = spec.get("content", {})
            if rcontent:
                if rct not in rcontent:
                    problems.append(f"response content type {rct!r} is not documented for {status}")
                else:
                    why = check(["paths", path, method, "responses", status, "content", rct, "schema"],
                                ex["response"].get("body"))
                    if why:
                        problems.append(why)
            out["response"] = "; ".join(problems) or None
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
