package gateway_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The node's parts depend one way: hub, httpwire and policy import
// neither each other nor the gateway package (only gateway composes them).
func TestPartsDependOneWay(t *testing.T) {
	const mod = "github.com/subsock/subsock/gateway"
	for _, part := range []string{"hub", "httpwire", "policy"} {
		files, err := filepath.Glob(filepath.Join(part, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no files (%v)", part, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if p == mod || strings.HasPrefix(p, mod+"/") {
					t.Errorf("%s imports %s: the parts of a node must not depend on each other or on gateway", f, p)
				}
			}
		}
	}
}
