# Compares every cell of a measured support matrix with what the kernel is
# known to do, for SOCKMAP and SOCKHASH alike:
#
#   awk -f compare-cells.awk expected/6.12.txt matrix.jsonl
#
# The first file is an expectation (see expected/*.txt): "MODE IN-SOCKET" and
# one word per out socket, or "insert KIND WORD". The second is what
# sockmap-matrix printed: one JSON line per probe. Prints each cell that
# differs, then how many cells were compared and how many differ.

# The value of "name":"value" in a JSON line ("" when it has none).
function field(line, name) {
	if (!match(line, "\"" name "\":\"[^\"]*\""))
		return ""
	return substr(line, RSTART + length(name) + 4, RLENGTH - length(name) - 5)
}

# A probe's outcome in an expectation's words: works, lost, accepted, normal
# (passthrough: the bytes took their normal path), STAGE:ERRNO (refused).
function word(line,    o) {
	o = field(line, "outcome")
	if (o == "passthrough")
		return "normal"
	if (o == "refused")
		return field(line, "stage") ":" field(line, "errno")
	if (o == "error")
		return "error:" field(line, "stage") ":" field(line, "errno")
	return o
}

function check(cell, want,    got) {
	cells++
	got = (cell in measured) ? measured[cell] : "missing"
	if (got != want) {
		unexpected++
		printf "unexpected: %s: expected %s, got %s\n", cell, want, got
	}
}

BEGIN {
	split("tcp udp unix-stream unix-dgram vsock-stream vsock-seqpacket", outs, " ")
	split("sockmap sockhash", maps, " ")
}

# The expectation (the first file): its rows, comments and blank lines left out.
FNR == NR {
	if ($0 !~ /^[ \t]*(#|$)/)
		rows[++nrows] = $0
	next
}

/"probe":"redirect"/ {
	measured[field($0, "map") " " field($0, "mode") " " field($0, "src") "->" field($0, "dst")] = word($0)
}
/"probe":"insert"/ {
	measured[field($0, "map") " insert " field($0, "kind")] = word($0)
}

END {
	for (r = 1; r <= nrows; r++) {
		n = split(rows[r], w, " ")
		for (m = 1; m <= 2; m++) {
			if (w[1] == "insert")
				check(maps[m] " insert " w[2], w[3])
			else if (n != 8)
				printf "unexpected: the expectation's row \"%s\" has %d words, not 8\n", rows[r], n
			else
				for (o = 1; o <= 6; o++)
					check(maps[m] " " w[1] " " w[2] "->" outs[o], w[o + 2])
		}
	}
	printf "%d cells compared, %d unexpected\n", cells, unexpected + 0
}
