package validate_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPureImports keeps the checks free of HTTP, registry clients and Kubernetes client
// construction: they take interfaces and return findings.
func TestPureImports(t *testing.T) {
	forbidden := []string{
		"net/http",
		"github.com/google/go-containerregistry/pkg/v1/remote",
		"github.com/pullgate/pullgate/pkg/registrycache",
		"github.com/pullgate/pullgate/pkg/webhook",
		"k8s.io/client-go/kubernetes",
		"sigs.k8s.io/controller-runtime",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s; pkg/validate must stay pure", file, path)
				}
			}
		}
	}
}
