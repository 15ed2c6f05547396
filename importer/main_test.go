package importer

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestHeaderNamesDocumented keeps the package documentation's list of
// column names in step with the table that the reader uses.
func TestHeaderNamesDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for name, kind := range headerNames {
		line := ""
		for _, l := range strings.Split(string(doc), "\n") {
			if strings.Contains(l, kind+":") {
				line = l
			}
		}
		if !strings.Contains(string(doc), " "+name+",") && !strings.Contains(string(doc), " "+name+"\n") {
			t.Errorf("column name %q (%s) is not in doc.go (%s)", name, kind, line)
		}
	}
}
