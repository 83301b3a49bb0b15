#!/usr/bin/env python3
"""CI check over `cargo doc`'s output. Lists public items of the multiproc crate docs whose own documentation has neither an
example (a code block, or a path under examples/) nor a link to an item page that has one."""
import os, re, sys, html
root = sys.argv[1] if len(sys.argv) > 1 else "target/doc/multiproc"
KINDS = ("struct.", "enum.", "trait.", "fn.", "type.", "macro.", "attr.", "derive.", "constant.")
pages = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".html") and f.startswith(KINDS):
            text = open(os.path.join(d, f)).read()
            if 'http-equiv="refresh"' not in text:
                pages[os.path.normpath(os.path.join(d, f))] = text
def top_doc(text):
    m = re.search(r'<details class="toggle top-doc" open>(.*?)</details>', text, re.S)
    return m.group(1) if m else ""
def has_example(doc):
    return "example-wrap" in doc or "<pre" in doc or "examples/" in doc
ok = {p for p, t in pages.items() if has_example(top_doc(t))}
missing = []
for p, t in sorted(pages.items()):
    if p in ok or "__private" in p:
        continue
    doc = top_doc(t)
    linked = False
    for href in re.findall(r'href="([^"#]+)(?:#[^"]*)?"', doc):
        target = os.path.normpath(os.path.join(os.path.dirname(p), html.unescape(href)))
        if target in ok or (target.endswith("index.html") and os.path.exists(target) and has_example(open(target).read())):
            linked = True
            break
    if not linked:
        missing.append(os.path.relpath(p, root))
print("\n".join(missing))
print(f"{len(missing)} of {len(pages)} public items have no example or link to one", file=sys.stderr)
sys.exit(1 if missing else 0)
