#!/usr/bin/env python3
"""A small renderer for deploy/helm/idreg, for tests where no helm binary is
available. It handles exactly the template constructs the chart uses:
{{ .Release.Name }}, {{ .Values.a.b }}, `| quote`, `toYaml X | nindent N`,
and {{- if X }} ... {{- end }}. Anything else is an error, so the chart cannot
grow a construct this check silently skips.

    render_chart.py CHART_DIR OUT_DIR [RELEASE_NAME]
"""
import os
import re
import sys

import yaml

chart, out = sys.argv[1], sys.argv[2]
release = sys.argv[3] if len(sys.argv) > 3 else "idreg"
values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))


def lookup(path):
    if path == ".Release.Name":
        return release
    if not path.startswith(".Values."):
        raise SystemExit(f"unsupported reference {path}")
    v = values
    for part in path[len(".Values."):].split("."):
        v = v[part]
    return v


def expr(text, indent_ctx):
    text = text.strip()
    m = re.fullmatch(r"toYaml (\S+) \| nindent (\d+)", text)
    if m:
        body = yaml.safe_dump(lookup(m.group(1)), default_flow_style=False).rstrip("\n")
        pad = " " * int(m.group(2))
        return "\n" + "\n".join(pad + line for line in body.splitlines())
    m = re.fullmatch(r"(\S+) \| quote", text)
    if m:
        return '"' + str(lookup(m.group(1))) + '"'
    if re.fullmatch(r"\.\S+", text):
        return str(lookup(text))
    raise SystemExit(f"unsupported template expression {{{{ {text} }}}}")


def render(src):
    # Conditionals first (no nesting in this chart).
    def cond(m):
        return m.group(2) if lookup(m.group(1)) else ""
    src = re.sub(r"\{\{- if (\S+) \}\}(.*?)\{\{- end \}\}", cond, src, flags=re.S)
    # `{{-` trims the whitespace before it.
    src = re.sub(r"\s*\{\{-(.*?)\}\}", lambda m: expr(m.group(1), None), src)
    src = re.sub(r"\{\{(.*?)\}\}", lambda m: expr(m.group(1), None), src)
    return src


os.makedirs(out, exist_ok=True)
for name in sorted(os.listdir(os.path.join(chart, "templates"))):
    text = render(open(os.path.join(chart, "templates", name)).read())
    open(os.path.join(out, name), "w").write(text)
    print(os.path.join(out, name))
