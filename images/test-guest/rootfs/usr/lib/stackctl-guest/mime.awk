# Split a MIME multipart user-data (as written by cloud-init's
# make-mime or Python's email package) into its parts:
#   DIR/NNN.type  the part's content type, lower-case, without parameters
#   DIR/NNN.enc   its Content-Transfer-Encoding (empty when none)
#   DIR/NNN.body  its body, still encoded
# with NNN = 001, 002, ... in the order of the parts.
# Usage: awk -v dir=DIR -f mime.awk user-data. Nested multiparts are not
# followed (their parts are skipped).

function header_value(line) { sub(/^[^:]*:[ \t]*/, "", line); return line }

# Record one complete header (continuation lines already joined).
function take_header(h,    name, v) {
    name = tolower(h); sub(/:.*/, "", name)
    v = header_value(h)
    if (name == "content-type") {
        ctype = tolower(v); sub(/;.*/, "", ctype); gsub(/[ \t]/, "", ctype)
        if (match(v, /[Bb][Oo][Uu][Nn][Dd][Aa][Rr][Yy]="?[^";]+/)) {
            b = substr(v, RSTART + 9, RLENGTH - 9); sub(/^"/, "", b)
            if (boundary == "") boundary = b
        }
    } else if (name == "content-transfer-encoding") {
        cenc = tolower(v); gsub(/[ \t]/, "", cenc)
    }
}

# Headers end at the first empty line; each part starts with "--boundary".
function end_headers() {
    if (hdr != "") take_header(hdr)
    hdr = ""
    if (state == "parthdr") {
        print ctype > (dir "/" n ".type"); close(dir "/" n ".type")
        print cenc > (dir "/" n ".enc"); close(dir "/" n ".enc")
        printf "" > (dir "/" n ".body")
        state = "partbody"
    } else {
        state = "preamble"
    }
}

BEGIN { state = "tophdr"; n = 0; hdr = ""; boundary = "" }

{ sub(/\r$/, "") }

state == "tophdr" || state == "parthdr" {
    if ($0 == "") { end_headers(); next }
    if ($0 ~ /^[ \t]/) { hdr = hdr " " $0; next }
    if (hdr != "") take_header(hdr)
    hdr = $0
    next
}

boundary != "" && $0 == "--" boundary "--" { if (state == "partbody") close(dir "/" n ".body"); exit }

boundary != "" && $0 == "--" boundary {
    if (state == "partbody") close(dir "/" n ".body")
    n = sprintf("%03d", n + 1); state = "parthdr"; ctype = "text/plain"; cenc = ""
    next
}

state == "partbody" { print > (dir "/" n ".body") }
