#!/usr/bin/env python3
"""Generates components/apimachinery/src/protobuf_schema.json.

The schema lets hakube decode Kubernetes protobuf request bodies
(application/vnd.kubernetes.protobuf) into the objects' JSON form. It holds
facts only: message names, field numbers, JSON names, types, labels and a few
flags. No comments or documentation text are copied from upstream.

Usage:
    scripts/gen-protobuf-schema.py API_GIT_DIR APIMACHINERY_GIT_DIR AGGREGATOR_GIT_DIR [OUT]

Each *_GIT_DIR is a git directory (bare or not) of, respectively,
github.com/kubernetes/api, github.com/kubernetes/apimachinery and
github.com/kubernetes/kube-aggregator; files are read at HEAD with
`git --git-dir=DIR show HEAD:PATH`. OUT defaults to
components/apimachinery/src/protobuf_schema.json next to this script's repo.

What is read:
  kubernetes/api:            <group>/<version>/generated.proto, *.go, register.go
                             for every GA version directory (v1, v2, ...)
  kubernetes/apimachinery:   pkg/apis/meta/v1, pkg/runtime, pkg/runtime/schema,
                             pkg/api/resource, pkg/util/intstr (same files)
  kubernetes/kube-aggregator: pkg/apis/apiregistration/v1 (same files)

Per directory:
  generated.proto  -> messages, field numbers, field names, types, labels, maps
  *.go (Go types)  -> for each field (matched by its protobuf tag's number):
                      JSON name, whether the field is embedded without a JSON
                      name (Go flattens it into the parent: "inline"), whether
                      it is `omitempty` on a non-pointer (Go drops its zero
                      value from JSON), which structs embed TypeMeta (kinds),
                      and which named types are slices (list wrappers such as
                      ExtraValue, rendered as plain arrays)
  register.go      -> GroupName, giving the apiVersion -> proto package table

Output format (JSON):
  {"generated": note,
   "groupVersions": {apiVersion: proto package},
   "messages": [[full name, flags, [field, ...]], ...]}
  message flags: "k" = a kind (embeds TypeMeta), "w" = list wrapper
  field: [number, json name, flags, type] or, for maps,
         [number, json name, flags, key type, value type]
  field flags: first char "o" optional / "r" repeated / "m" map, then
               "i" = inline (merge into parent), "z" = omit zero value
  type: a scalar type name (string, int32, ...) or an integer index into
        "messages".
"""

import json
import os
import re
import subprocess
import sys

SCALARS = {
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
}

APIMACHINERY_DIRS = [
    "pkg/apis/meta/v1",
    "pkg/runtime",
    "pkg/runtime/schema",
    "pkg/api/resource",
    "pkg/util/intstr",
]
AGGREGATOR_DIRS = ["pkg/apis/apiregistration/v1"]
# Only GA versions are served by hakube; alpha/beta packages would only grow the file.
GA_VERSION = re.compile(r"^v\d+$")


def git_show(git_dir, path):
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout


def git_ls(git_dir):
    out = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", "-r", "HEAD", "--name-only"],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.splitlines()


def strip_proto_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


FIELD_RE = re.compile(
    r"^(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(?:\[[^\]]*\])?\s*;$")
MAP_RE = re.compile(r"^map<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;$")


def parse_proto(text, path):
    """Returns (package, {message name: [field dict, ...]})."""
    text = strip_proto_comments(text)
    m = re.search(r"^\s*package\s+([\w.]+)\s*;", text, flags=re.M)
    if not m:
        sys.exit(f"{path}: no package statement")
    package = m.group(1)
    messages = {}
    for mm in re.finditer(r"\bmessage\s+(\w+)\s*\{([^{}]*)\}", text):
        fields = []
        for stmt in mm.group(2).split(";"):
            stmt = " ".join(stmt.split())
            if not stmt:
                continue
            stmt += ";"
            f = FIELD_RE.match(stmt)
            if f:
                fields.append({"label": f.group(1), "type": f.group(2),
                               "name": f.group(3), "number": int(f.group(4))})
                continue
            f = MAP_RE.match(stmt)
            if f:
                fields.append({"label": "map", "key": f.group(1), "type": f.group(2),
                               "name": f.group(3), "number": int(f.group(4))})
                continue
            sys.exit(f"{path}: message {mm.group(1)}: cannot parse {stmt!r}")
        messages[mm.group(1)] = fields
    # Nested messages, enums or oneofs would be silently mangled by the regex above.
    if re.search(r"\b(enum|oneof|extend|group)\b\s+\w+\s*\{", text):
        sys.exit(f"{path}: unsupported proto construct")
    return package, messages


TYPE_STRUCT_RE = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
TYPE_SLICE_RE = re.compile(r"^type\s+(\w+)\s+\[\]([\w.]+)\s*$")
JSON_TAG_RE = re.compile(r'json:"([^"]*)"')
PROTO_TAG_RE = re.compile(r'protobuf:"([^"]*)"')


def parse_go(text):
    """Returns ({struct: {number: info}}, set of kind structs, set of slice types)."""
    structs, kinds, slices = {}, set(), set()
    current, depth = None, 0
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].rstrip() if "`" not in raw else raw.rstrip()
        if current is None:
            m = TYPE_STRUCT_RE.match(line)
            if m:
                current, depth = m.group(1), 1
                structs.setdefault(current, {})
                continue
            m = TYPE_SLICE_RE.match(line)
            if m:
                slices.add(m.group(1))
            continue
        stripped = line.strip()
        if stripped.endswith("{"):
            depth += 1
            continue
        if stripped.startswith("}"):
            depth -= 1
            if depth == 0:
                current = None
            continue
        if depth != 1 or "`" not in stripped:
            continue
        prefix, tag = stripped.split("`", 1)
        parts = prefix.split()
        if len(parts) == 1:
            go_name, go_type, embedded = None, parts[0], True
        elif len(parts) == 2:
            go_name, go_type, embedded = parts[0], parts[1], False
        else:
            continue
        jm = JSON_TAG_RE.search(tag)
        json_opts = jm.group(1).split(",") if jm else [""]
        json_name = json_opts[0]
        pm = PROTO_TAG_RE.search(tag)
        # A struct embedding TypeMeta (without a protobuf field for it) is a kind.
        if embedded and go_type.split(".")[-1] == "TypeMeta" and json_name == "" and not pm:
            kinds.add(current)
            continue
        if not pm or pm.group(1) == "-":
            continue
        number = int(pm.group(1).split(",")[1])
        if json_name == "" and not embedded:
            json_name = go_name  # encoding/json falls back to the Go name.
        structs[current][number] = {
            "json": json_name,
            "inline": embedded and json_name == "",
            "omitempty": "omitempty" in json_opts[1:],
            "pointer": go_type.startswith("*"),
        }
    return structs, kinds, slices


def go_sources(git_dir, files, directory):
    for path in files:
        if os.path.dirname(path) != directory or not path.endswith(".go"):
            continue
        base = os.path.basename(path)
        if (base.endswith("_test.go") or base.startswith("generated.")
                or base.startswith("zz_generated") or "swagger_doc" in base):
            continue
        yield git_show(git_dir, path)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    api, apimachinery, aggregator = sys.argv[1:4]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[4] if len(sys.argv) == 5 else os.path.join(
        here, "..", "components", "apimachinery", "src", "protobuf_schema.json")

    # Every proto directory is parsed; GA group versions (plus meta and the
    # apimachinery helper packages) are the roots, and other packages only
    # contribute the messages those roots reference.
    dirs = []  # (git dir, directory, is a root, file list)
    for git_dir in (api, apimachinery, aggregator):
        files = git_ls(git_dir)
        for path in sorted(files):
            if not path.endswith("/generated.proto") or "testapigroup" in path:
                continue
            d = os.path.dirname(path)
            if git_dir == apimachinery:
                root = d in APIMACHINERY_DIRS
            elif git_dir == aggregator:
                root = d in AGGREGATOR_DIRS
            else:
                root = d.count("/") == 1 and bool(GA_VERSION.match(d.split("/")[1]))
            dirs.append((git_dir, d, root, files))

    messages = {}  # full name -> (flags, fields, package)
    roots = []
    group_versions = {}
    go_mismatch = []
    for git_dir, d, root, files in dirs:
        package, protos = parse_proto(git_show(git_dir, f"{d}/generated.proto"), d)
        structs, kinds, slices = {}, set(), set()
        for src in go_sources(git_dir, files, d):
            s, k, sl = parse_go(src)
            for name, fields in s.items():
                structs.setdefault(name, {}).update(fields)
            kinds |= k
            slices |= sl
        served = root and (git_dir != apimachinery or d == "pkg/apis/meta/v1")
        if served:
            reg = git_show(git_dir, f"{d}/register.go")
            m = re.search(r'GroupName\s*=\s*"([^"]*)"', reg)
            if not m:
                sys.exit(f"{d}/register.go: no GroupName")
            version = d.rsplit("/", 1)[1]
            gv = f"{m.group(1)}/{version}" if m.group(1) else version
            group_versions[gv] = package
        for name, fields in protos.items():
            go = structs.get(name, {})
            wrapper = (name in slices and len(fields) == 1
                       and fields[0]["label"] == "repeated" and fields[0]["number"] == 1)
            for f in fields:
                info = go.get(f["number"])
                if info is None:
                    f["json"], f["inline"], f["zero"] = f["name"], False, False
                    if name not in slices:
                        go_mismatch.append(f"{package}.{name}.{f['name']}: no Go field")
                    continue
                f["json"], f["inline"] = info["json"], info["inline"]
                f["zero"] = info["omitempty"] and not info["pointer"]
                if not f["inline"] and f["json"] != f["name"]:
                    go_mismatch.append(
                        f"{package}.{name}.{f['name']}: JSON name {f['json']}")
            flags = ("k" if name in kinds else "") + ("w" if wrapper else "")
            messages[f"{package}.{name}"] = (flags, fields, package)
            if root:
                roots.append(f"{package}.{name}")

    def full_name(type_name, package):
        if type_name in SCALARS:
            return None
        if type_name.startswith("."):
            full = type_name[1:]
        elif f"{package}.{type_name}" in messages:
            full = f"{package}.{type_name}"
        else:
            full = type_name
        if full not in messages:
            sys.exit(f"unresolved type {type_name} in package {package}")
        return full

    keep, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in keep:
            continue
        keep.add(n)
        for f in messages[n][1]:
            ref = full_name(f["type"], messages[n][2])
            if ref:
                todo.append(ref)
    messages = {n: v for n, v in messages.items() if n in keep}
    go_mismatch = [m for m in go_mismatch if m.split(":")[0].rsplit(".", 1)[0] in keep]

    names = sorted(messages)
    index = {n: i for i, n in enumerate(names)}

    def resolve(type_name, package):
        full = full_name(type_name, package)
        return (type_name, True) if full is None else (index[full], False)

    out_messages = []
    for n in names:
        flags, fields, package = messages[n]
        out_fields = []
        for f in fields:
            label = {"optional": "o", "required": "o", "repeated": "r", "map": "m"}[f["label"]]
            ty, scalar = resolve(f["type"], package)
            wrapper_ty = not scalar and "w" in messages[names[ty]][0]
            fl = label
            if f["inline"]:
                fl += "i"
            # Go drops zero scalars and empty slices with omitempty; structs never.
            if f["zero"] and label == "o" and (scalar or wrapper_ty):
                fl += "z"
            if label == "m":
                key, key_scalar = resolve(f["key"], package)
                if not key_scalar:
                    sys.exit(f"{n}.{f['name']}: map key must be scalar")
                out_fields.append([f["number"], f["json"], fl, key, ty])
            else:
                out_fields.append([f["number"], f["json"], fl, ty])
        out_messages.append([n, flags, out_fields])

    doc = {
        "generated": "Generated by scripts/gen-protobuf-schema.py from the generated.proto "
                     "and Go type files of kubernetes/api, kubernetes/apimachinery and "
                     "kubernetes/kube-aggregator. Do not edit by hand.",
        "groupVersions": dict(sorted(group_versions.items())),
        "messages": out_messages,
    }
    # One message per line keeps the file compact yet reviewable in diffs.
    lines = ["{",
             f'"generated": {json.dumps(doc["generated"])},',
             f'"groupVersions": {json.dumps(doc["groupVersions"], separators=(",", ":"))},',
             '"messages": [']
    for i, m in enumerate(out_messages):
        sep = "," if i + 1 < len(out_messages) else ""
        lines.append(json.dumps(m, separators=(",", ":")) + sep)
    lines += ["]", "}"]
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    for line in go_mismatch:
        print(f"note: {line}", file=sys.stderr)
    print(f"wrote {out}: {len(out_messages)} messages, {len(group_versions)} group versions, "
          f"{os.path.getsize(out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
