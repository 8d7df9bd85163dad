import re, json, sys
full = open(sys.argv[1]).read()
start = full.index(sys.argv[3]) if len(sys.argv) > 3 else 0
src = full

label = sys.argv[2]
def lineno(pos): return src.count("\n", 0, pos) + 1
def val(t):
    t = t.strip()
    if t == "NULL": return None
    if t in ("true", "false"): return t == "true"
    if t.startswith('"'): return json.loads(t)
    if re.fullmatch(r"-?\d+", t): return int(t)
    return t  # symbolic (GNUTLS_KEY_..., GNUTLS_KP_...)
reqs = []
for m in re.compile(r"TLS_(ROOT|CERT)_REQ(?:_SIMPLE)?\(\s*(\w+)\s*,(.*?)\);", re.S).finditer(src, start):
    kind, name, body = m.group(1), m.group(2), m.group(3)
    if name == "varname": continue
    args = [a for a in re.split(r",(?![^\"]*\"(?:[^\"]*\"[^\"]*\")*[^\"]*$)", body)]
    # simple split respecting quotes
    parts, cur, q = [], "", False
    for ch in body:
        if ch == '"': q = not q
        if ch == "," and not q: parts.append(cur); cur = ""
        else: cur += ch
    parts.append(cur)
    parts = [p.strip() for p in parts]
    issuer = None
    if kind == "CERT":
        issuer = parts[0]; parts = parts[1:]
    if len(parts) != 18: continue
    keys = ["country","cn","altname1","altname2","ipaddr1","ipaddr2","bcEnable","bcCritical","bcIsCA","kuEnable","kuCritical","kuValue","kpEnable","kpCritical","kpOid1","kpOid2","startHours","expireHours"]
    d = {k: val(v) for k, v in zip(keys, parts)}
    d["kuValue"] = d["kuValue"] if isinstance(d["kuValue"], int) else " | ".join(x.strip() for x in str(d["kuValue"]).split("|")) if d["kuValue"] else 0
    reqs.append({"name": name, "issuer": issuer, "line": lineno(m.start()), **d})
tests = []
for m in re.compile(r"(DO_CTX_TEST|TLS_TEST_REG)\((.*?)\);", re.S).finditer(src, start):
    a = [x.strip() for x in re.split(r",(?![^()]*\))", m.group(2))]
    name = None
    if m.group(1) == "TLS_TEST_REG": name = a[0]; a = a[1:]
    if a[0].startswith("_"): continue
    tests.append({"line": lineno(m.start()), "isServer": a[0] == "true", "ca": a[1], "cert": a[2], "expectFail": " ".join(a[3].split()), **({"name": name} if name else {})})
chains = {}
for m in re.compile(r"certchain\[\] = \{(.*?)\};.*?write_cert_chain\(\s*(?:WORKDIR\s*)?\"([^\"]+)\"|certchain\[\] = \{(.*?)\};.*?WriteCertChain\(\"([^\"]+)\"", re.S | re.I).finditer(src, start):
    body = m.group(1) or m.group(3); fname = m.group(2) or m.group(4)
    chains[fname] = [x.strip().split(".")[0] for x in body.split(",") if x.strip()]
json.dump({"source": label, "reqs": reqs, "tests": tests, "chains": chains}, sys.stdout, indent=1)
