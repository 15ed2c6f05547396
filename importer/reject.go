package importer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/tsfallback/tsfallback/model"
)

// Reason codes of rejected rows, the keys of Result.Rejections. The report
// carries the code and a sentence for people.
const (
	ReasonMalformed       = "malformed_row"
	ReasonNoIdentifier    = "no_identifier"
	ReasonNotDigits       = "not_digits"
	ReasonLength          = "wrong_length"
	ReasonCheckDigit      = "check_digit"
	ReasonPrefix          = "wrong_prefix"
	ReasonScientific      = "scientific_notation"
	ReasonZeros           = "digits_replaced_by_zeros"
	ReasonLeadingZeros    = "leading_zeros_lost"
	ReasonDecimal         = "decimal_suffix"
	ReasonNoAccount       = "no_account"
	ReasonBadAccount      = "bad_account"
	ReasonAccountMismatch = "account_mismatch"
	// ReasonConflict rejects a row that shares an identifier with an
	// earlier device but not the rest of it.
	ReasonConflict = "conflicting_rows"
	// ReasonDuplicate marks report lines of duplicates, which are not
	// rejections: they count in Result.Duplicates.
	ReasonDuplicate = "duplicate"
)

// maxReportValue bounds the value copied into a report line.
const maxReportValue = 100

// Rejection is one report line: a field, or a whole row (Column empty),
// that was not published.
type Rejection struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	Column string `json:"column"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
	Code   string `json:"code"`
}

var (
	scientific = regexp.MustCompile(`^[+-]?[0-9]+([.,][0-9]*)?[eE][+-]?[0-9]+$`)
	decimal    = regexp.MustCompile(`^([0-9]+)[.,]0+$`)
)

// spreadsheetDigits is how many significant digits a spreadsheet keeps of
// a number.
const spreadsheetDigits = 15

func validateKind(kind, v string) error {
	switch kind {
	case model.KindEID:
		return model.ValidateEID(v)
	case model.KindICCID:
		return model.ValidateICCID(v)
	default:
		return model.ValidateIMEI(v)
	}
}

// checkID returns "" for an exact identifier of the kind, or a reason code
// and a sentence. Spreadsheet damage is looked for first, so that the
// operator learns what happened to the file rather than only that a check
// digit is wrong.
func checkID(kind, v string) (code, reason string) {
	err := validateKind(kind, v)
	if err == nil {
		return "", ""
	}
	if scientific.MatchString(v) {
		return ReasonScientific, "scientific notation: a spreadsheet turned the " +
			"identifier into a number and dropped digits; format the column as text " +
			"and export again"
	}
	if m := decimal.FindStringSubmatch(v); m != nil {
		r := "decimal suffix: a spreadsheet stored the identifier as a number"
		if validateKind(kind, m[1]) == nil {
			r += " (without the suffix it is valid)"
		}
		return ReasonDecimal, r
	}
	if digitsOnly(v) {
		if kind != model.KindIMEI && len(v) > spreadsheetDigits {
			sig := strings.TrimRight(v, "0")
			if len(v)-len(sig) >= 2 && len(sig) <= spreadsheetDigits {
				return ReasonZeros, fmt.Sprintf("digits replaced by zeros (a spreadsheet "+
					"kept only %d significant digits)", spreadsheetDigits)
			}
		}
		// IMEIs may start with 0 (reporting body 01); EIDs and ICCIDs
		// start with 89, so only an IMEI can lose leading zeros.
		if kind == model.KindIMEI && len(v) >= 13 && len(v) < 15 &&
			model.ValidateIMEI(strings.Repeat("0", 15-len(v))+v) == nil {
			return ReasonLeadingZeros, fmt.Sprintf("%d digits: leading zeros lost "+
				"(a spreadsheet stored the IMEI as a number; with them it is valid)", len(v))
		}
	}
	return modelReason(err)
}

func modelReason(err error) (code, reason string) {
	reason = strings.TrimPrefix(err.Error(), "model: ")
	switch {
	case errors.Is(err, model.ErrNotDigits):
		return ReasonNotDigits, reason
	case errors.Is(err, model.ErrLength):
		return ReasonLength, reason
	case errors.Is(err, model.ErrPrefix):
		return ReasonPrefix, reason
	case errors.Is(err, model.ErrCheckDigit):
		return ReasonCheckDigit, reason
	}
	return ReasonNotDigits, reason
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// reportValue shortens a value for the report.
func reportValue(s string) string {
	if len(s) <= maxReportValue {
		return s
	}
	return s[:maxReportValue] + "..."
}
