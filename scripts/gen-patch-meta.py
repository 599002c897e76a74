#!/usr/bin/env python3
"""Generates components/apiserver/src/openapi/patch_meta.json.

The file records, for every field of the built-in API types that has one, the
patch and list metadata upstream publishes in its OpenAPI documents: the
strategic-merge-patch strategy and merge key (`patchStrategy` / `patchMergeKey`
struct tags) and the server-side-apply list and map types (`+listType`,
`+listMapKey`, `+mapType` markers). Facts only: no documentation text is copied.

Usage:
    scripts/gen-patch-meta.py API_GIT_DIR APIMACHINERY_GIT_DIR AGGREGATOR_GIT_DIR [OUT]

Each *_GIT_DIR is a git directory of, respectively, github.com/kubernetes/api,
github.com/kubernetes/apimachinery and github.com/kubernetes/kube-aggregator;
files are read at HEAD.

Output: {"generated": note,
         "definitions": {OpenAPI definition name: {json field name: meta}}}
meta keys: "strategy" (e.g. "merge", "retainKeys", "merge,retainKeys"),
           "mergeKey", "listType", "listMapKeys" (list), "mapType".
The key "." of a definition holds type-level markers: {"mapType": "atomic"} for
structs marked `+structType=atomic` (server-side apply owns them as a whole).
Fields of embedded (inline) structs are copied into the embedding type, as Go's
JSON encoding and upstream's OpenAPI flatten them.
"""

import json
import os
import re
import subprocess
import sys

GA_VERSION = re.compile(r"^v\d+$")
TYPE_STRUCT_RE = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
JSON_TAG_RE = re.compile(r'json:"([^"]*)"')
STRATEGY_TAG_RE = re.compile(r'patchStrategy:"([^"]*)"')
MERGE_KEY_TAG_RE = re.compile(r'patchMergeKey:"([^"]*)"')
MARKER_RE = re.compile(r"^//\s*\+(listType|listMapKey|mapType)=(\S+)\s*$")
TYPE_MARKER_RE = re.compile(r"^//\s*\+structType=atomic\s*$")


def git(git_dir, *args):
    return subprocess.run(["git", "--git-dir", git_dir, *args],
                          check=True, capture_output=True, text=True).stdout


def parse_go(text):
    """Returns {struct: {json name: meta}} and {struct: [embedded struct names]}."""
    structs, embeds = {}, {}
    current, depth, markers, atomic_type = None, 0, {}, False
    for raw in text.splitlines():
        stripped = raw.strip()
        if current is None:
            if TYPE_MARKER_RE.match(stripped):
                atomic_type = True
                continue
            m = TYPE_STRUCT_RE.match(stripped)
            if m:
                current, depth, markers = m.group(1), 1, {}
                structs.setdefault(current, {})
                if atomic_type:
                    structs[current]["."] = {"mapType": "atomic"}
            if not stripped.startswith("//"):
                atomic_type = False
            continue
        marker = MARKER_RE.match(stripped)
        if marker:
            key, value = marker.groups()
            if key == "listMapKey":
                markers.setdefault("listMapKeys", []).append(value)
            else:
                markers[key] = value
            continue
        if stripped.startswith("//") or not stripped:
            continue
        code = stripped if "`" in stripped else stripped.split("//", 1)[0].strip()
        if code.endswith("{"):
            depth += 1
            markers = {}
            continue
        if code.startswith("}"):
            depth -= 1
            if depth == 0:
                current = None
            markers = {}
            continue
        if depth != 1:
            markers = {}
            continue
        prefix = code.split("`", 1)[0].split()
        tag = code.split("`", 1)[1] if "`" in code else ""
        json_name = ""
        jm = JSON_TAG_RE.search(tag)
        if jm:
            json_name = jm.group(1).split(",")[0]
        if len(prefix) == 1:
            if json_name in ("", ",inline") or (jm and jm.group(1).startswith(",inline")):
                embeds.setdefault(current, []).append(prefix[0].lstrip("*").split(".")[-1])
            markers = {}
            continue
        if json_name in ("", "-"):
            markers = {}
            continue
        meta = dict(markers)
        sm = STRATEGY_TAG_RE.search(tag)
        if sm:
            meta["strategy"] = sm.group(1)
        km = MERGE_KEY_TAG_RE.search(tag)
        if km:
            meta["mergeKey"] = km.group(1)
        if meta:
            structs[current][json_name] = dict(sorted(meta.items()))
        markers = {}
    return structs, embeds


def package_dirs(git_dir, keep):
    dirs = set()
    for path in git(git_dir, "ls-tree", "-r", "HEAD", "--name-only").splitlines():
        if path.endswith(".go") and keep(os.path.dirname(path)):
            dirs.add(os.path.dirname(path))
    return sorted(dirs)


def go_files(git_dir, directory):
    names = git(git_dir, "ls-tree", "--name-only", f"HEAD:{directory}").splitlines()
    for base in names:
        if (not base.endswith(".go") or base.endswith("_test.go")
                or base.startswith(("generated.", "zz_generated")) or "swagger_doc" in base):
            continue
        yield git(git_dir, "show", f"HEAD:{directory}/{base}")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    api, apimachinery, aggregator = sys.argv[1:4]
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[4] if len(sys.argv) == 5 else os.path.join(
        here, "..", "components", "apiserver", "src", "openapi", "patch_meta.json")

    sources = []  # (git dir, directory, definition prefix)
    for d in package_dirs(api, lambda d: d.count("/") == 1 and GA_VERSION.match(d.split("/")[1])):
        sources.append((api, d, "io.k8s.api." + d.replace("/", ".")))
    sources.append((apimachinery, "pkg/apis/meta/v1", "io.k8s.apimachinery.pkg.apis.meta.v1"))
    sources.append((aggregator, "pkg/apis/apiregistration/v1",
                    "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1"))

    definitions = {}
    for git_dir, d, prefix in sources:
        structs, embeds = {}, {}
        for text in go_files(git_dir, d):
            s, e = parse_go(text)
            for name, fields in s.items():
                structs.setdefault(name, {}).update(fields)
            for name, inner in e.items():
                embeds.setdefault(name, []).extend(inner)

        def flattened(name, seen=()):
            fields = dict(structs.get(name, {}))
            for inner in embeds.get(name, []):
                if inner not in seen:
                    for k, v in flattened(inner, seen + (name,)).items():
                        fields.setdefault(k, v)
            return fields

        for name in structs:
            fields = flattened(name)
            if fields:
                definitions[f"{prefix}.{name}"] = dict(sorted(fields.items()))

    doc = {
        "generated": "Generated by scripts/gen-patch-meta.py from the Go type files of "
                     "kubernetes/api, kubernetes/apimachinery and kubernetes/kube-aggregator. "
                     "Do not edit by hand.",
        "definitions": dict(sorted(definitions.items())),
    }
    lines = ["{", f'"generated": {json.dumps(doc["generated"])},', '"definitions": {']
    items = list(doc["definitions"].items())
    for i, (name, fields) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(fields, separators=(',', ':'))}{sep}")
    lines += ["}", "}"]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {out}: {len(items)} definitions, {os.path.getsize(out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
