package importer

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/tsfallback/tsfallback/model"
)

// ColumnAccount is the column kind of the account name.
const ColumnAccount = "account"

// ErrHeader is matched by every header problem.
var ErrHeader = errors.New("importer: bad header")

// headerNames maps folded column names (see foldName) to their kind. The
// list is repeated in the package documentation; keep both in step.
var headerNames = map[string]string{
	"eid": model.KindEID, "eidnumber": model.KindEID, "esimeid": model.KindEID,
	"esimid": model.KindEID, "euicc": model.KindEID, "euiccid": model.KindEID,
	"euicceid": model.KindEID,

	"iccid": model.KindICCID, "iccidnumber": model.KindICCID, "iccidno": model.KindICCID,
	"sim": model.KindICCID, "simiccid": model.KindICCID, "simnumber": model.KindICCID,
	"simcardnumber": model.KindICCID, "simid": model.KindICCID,

	"imei": model.KindIMEI, "imeinumber": model.KindIMEI, "imeino": model.KindIMEI,
	"deviceimei": model.KindIMEI,

	"account": ColumnAccount, "accountname": ColumnAccount,
	"accountnumber": ColumnAccount, "accountid": ColumnAccount,
}

// foldName lower-cases a column name and drops everything that is not a
// letter or a digit, so "SIM ICCID", "sim_iccid" and "Sim-ICCID" match.
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// column is one recognised column of a file.
type column struct {
	index int
	kind  string // model.Kind* or ColumnAccount
	name  string // as written in the header, for reports
}

// header holds the recognised columns: identifiers in model.JobKinds
// order, then the account column if any.
type header struct {
	ids     []column
	account *column
}

// parseHeader recognises the columns of the header row at line.
func parseHeader(fields [][]byte, line int) (header, error) {
	var h header
	seen := map[string]int{}
	for i, f := range fields {
		name := string(f)
		kind, ok := headerNames[foldName(name)]
		if !ok {
			if looksLikeID(name) {
				return h, fmt.Errorf("%w: line %d: %q looks like an identifier, not a column "+
					"name; the first row must name the columns (eid, iccid, imei, account)",
					ErrHeader, line, name)
			}
			continue
		}
		if prev, dup := seen[kind]; dup {
			return h, fmt.Errorf("%w: line %d: columns %d (%q) and %d (%q) both name %s",
				ErrHeader, line, prev+1, fields[prev], i+1, name, kind)
		}
		seen[kind] = i
		c := column{index: i, kind: kind, name: name}
		if kind == ColumnAccount {
			h.account = &c
		}
	}
	for _, k := range model.JobKinds {
		if i, ok := seen[k]; ok {
			h.ids = append(h.ids, column{index: i, kind: k, name: string(fields[i])})
		}
	}
	if len(h.ids) == 0 {
		return h, fmt.Errorf("%w: line %d names no identifier column; want one of eid, "+
			"iccid or imei (see the accepted names in the documentation)", ErrHeader, line)
	}
	return h, nil
}

// looksLikeID reports whether a header cell is really a data value: a long
// digit string, possibly in scientific notation.
func looksLikeID(s string) bool {
	digits := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	return digits >= 10 && digits*10 >= len(s)*8
}
