# Flatten the YAML (or JSON) that NoCloud seeds carry into "path<TAB>value"
# lines, one per scalar: mapping keys join with "/", list items repeat their
# parent's path. Enough YAML for meta-data and #cloud-config: block mappings
# and lists (also lists of mappings), quoted and plain scalars, | and > block
# scalars (one line per output line), flow [..] and {..} values, and a whole
# document in JSON. Anchors, tags and multi-document streams are not handled.
#
#   instance-id: iid-1        ->  instance-id<TAB>iid-1
#   public-keys:              ->  public-keys<TAB>ssh-ed25519 AAAA... a@b
#     - ssh-ed25519 AAAA... a@b

function emit(path, value) {
    gsub(/[\t\r\n]/, " ", value)
    if (value != "") print path "\t" value
}

function join(path, key) { return path == "" ? key : path "/" key }

function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }

# ---- flow (JSON-like) values: a scanner over S from position P ------------

function fl_ws() { while (P <= L && substr(S, P, 1) ~ /[ \t\r\n]/) P++ }

function fl_quoted(    q, c, out) {
    q = substr(S, P, 1); P++; out = ""
    while (P <= L) {
        c = substr(S, P, 1); P++
        if (c == q) {
            if (q == "'" && substr(S, P, 1) == "'") { out = out "'"; P++; continue }
            return out
        }
        if (c == "\\" && q == "\"") {
            c = substr(S, P, 1); P++
            if (c == "n") c = "\n"
            else if (c == "t") c = "\t"
            else if (c == "u") { c = "?"; P += 4 }
        }
        out = out c
    }
    return out
}

# A plain scalar ends at , ] } or at ": " (so "http://x" stays whole).
function fl_plain(    start, c) {
    start = P
    while (P <= L) {
        c = substr(S, P, 1)
        if (c ~ /[],}]/) break
        if (c == ":" && (P == L || substr(S, P + 1, 1) ~ /[ \t]/)) break
        P++
    }
    return trim(substr(S, start, P - start))
}

# Containers loop until their closing bracket; "start" guards against
# stalling on malformed input (a stray ] in a mapping, a : in a list).
function fl_value(path,    c, k, start, mapping) {
    fl_ws(); c = substr(S, P, 1)
    if (c == "{" || c == "[") {
        mapping = (c == "{"); P++
        while (P <= L) {
            fl_ws(); c = substr(S, P, 1); start = P
            if (c == "}" || c == "]") { P++; return }
            if (c == ",") { P++; continue }
            if (mapping) {
                k = (c == "\"" || c == "'") ? fl_quoted() : fl_plain()
                fl_ws()
                if (substr(S, P, 1) == ":") P++
                fl_value(join(path, k))
            } else {
                fl_value(path)
            }
            if (P == start) P++
        }
    } else if (c == "\"" || c == "'") {
        emit(path, fl_quoted())
    } else {
        k = fl_plain()
        if (k != "null" && k != "~") emit(path, k)
    }
}

function flow(text, path) { S = text; L = length(text); P = 1; fl_value(path) }

# ---- block YAML ------------------------------------------------------------

function scalar(path, v) {
    v = trim(v)
    if (v ~ /^[[{]/) { flow(v, path); return }
    if (v ~ /^["']/) { flow(v, path); return }
    sub(/[ \t]+#.*$/, "", v)
    if (v == "null" || v == "~") return
    emit(path, v)
}

# One "key: value" line whose key starts at column n.
function keyline(n, text,    k, v, p) {
    if (text ~ /^["']/) {
        S = text; L = length(text); P = 1; k = fl_quoted()
        v = substr(text, P); sub(/^[ \t]*:/, "", v)
    } else {
        k = text; sub(/:([ \t].*)?$/, "", k)
        v = substr(text, length(k) + 2)
    }
    p = join(top_path(), trim(k)); v = trim(v)
    if (v == "" || v ~ /^#/) { push(n, p, 0); return }
    if (v ~ /^[|>][-+0-9]*$/) { blk = 1; blk_ind = n; blk_path = p; return }
    scalar(p, v)
}

function top_path() { return D ? pth[D] : "" }
function push(n, p, item) { D++; ind[D] = n; pth[D] = p; itm[D] = item }

BEGIN { D = 0; blk = 0; json = 0; doc = "" }

{ sub(/\r$/, "") }

json { doc = doc " " $0; next }

blk {
    if ($0 ~ /^[ \t]*$/) next
    match($0, /^ */)
    if (RLENGTH > blk_ind) { emit(blk_path, trim($0)); next }
    blk = 0
}

/^[ \t]*(#.*)?$/ || /^(---|\.\.\.)/ { next }

D == 0 && /^[ \t]*[[{]/ { json = 1; doc = $0; next }

{
    match($0, /^ */); n = RLENGTH; text = substr($0, n + 1)
    while (text ~ /^-([ \t]|$)/) {
        # A list item: siblings share the dash column; a key's list may start
        # at the key's own column.
        while (D && (ind[D] > n || (ind[D] == n && itm[D]))) D--
        rest = substr(text, 2); match(rest, /^[ \t]*/)
        push(n, top_path(), 1)
        n += 1 + RLENGTH; text = substr(rest, RLENGTH + 1)
        if (text == "") next
    }
    if (text ~ /^("[^"]*"|'[^']*'|[A-Za-z0-9_.\/-]+)[ \t]*:([ \t]|$)/) {
        while (D && ind[D] >= n) D--
        keyline(n, text)
    } else {
        while (D && ind[D] > n) D--
        scalar(top_path(), text)
    }
}

END { if (json) flow(doc, "") }
